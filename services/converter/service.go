package converter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/slipway/slipway/pkg/diskspace"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/converter/blank"
)

// Name is the service name: subjects, durable consumer, micro service.
const Name = schemas.ServiceConverter

// Version is reported by the micro service.
const Version = "0.1.0"

// DefaultMaxVirtualSize is the default of Config.MaxVirtualSize.
const DefaultMaxVirtualSize int64 = 1 << 40 // 1 TiB

// Config tunes the service. The zero value works.
type Config struct {
	// Config is what every worker tunes. The scratch directory needs room
	// for an input and its conversion.
	worker.Config
	// MaxVirtualSize is the largest virtual size accepted; a command may
	// ask for less, never more. Default 1 TiB.
	MaxVirtualSize int64
	// MaxInputBytes caps a fetched input after decompression; default
	// MaxVirtualSize + 1 GiB (image metadata).
	MaxInputBytes int64
	// QemuImg runs qemu-img; nil means its defaults.
	QemuImg *qemuimg.Runner
	// Fetch adds options to every fetch (the guard of http(s) sources,
	// retries); its Store, Checksum, MaxBytes, Progress and TempDir are
	// set per job. A nil Fetch.Guard refuses loopback, private and other
	// special addresses (ConfigFromEnv reads SLIPWAY_FETCH_ALLOW).
	Fetch fetch.Options
	// Locations are the buckets destinations and s3:// sources are
	// checked against; zero means blob.DefaultLocations() (see
	// blob.LocationsFromEnv).
	Locations blob.Locations
}

// Service is the converter.
type Service struct {
	store  *blob.Store
	cfg    Config
	log    *slog.Logger
	tracer trace.Tracer
	w      *worker.Worker
	jobs   worker.Tracker[schemas.ConverterPhase, JobStatus]
	// phased settles the jobs and rejects what cannot be understood.
	phased worker.PhasedJobs[schemas.ConverterPhase]
}

// New returns a converter publishing on b and storing in store.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	if cfg.MaxVirtualSize <= 0 {
		cfg.MaxVirtualSize = DefaultMaxVirtualSize
	}
	if cfg.MaxInputBytes <= 0 {
		cfg.MaxInputBytes = cfg.MaxVirtualSize + 1<<30
	}
	if cfg.QemuImg == nil {
		cfg.QemuImg = &qemuimg.Runner{}
	}
	if len(cfg.Locations.DatastoreBuckets) == 0 && cfg.Locations.UploadBucket == "" {
		cfg.Locations = blob.DefaultLocations()
	}
	s := &Service{store: store, tracer: otel.Tracer("slipway/converter")}
	s.w = worker.New(b, cfg.Config, worker.Spec{
		Name: Name, Version: Version, Description: "Fetches, inspects, converts and stores disk images; makes empty disks",
		Handle:  s.handle,
		Queries: map[string]bus.QueryHandler{schemas.QueryConverterFormats: s.queryFormats},
		Jobs:    &s.jobs,
		Running: func() []any { return []any{"max_virtual_size", s.cfg.MaxVirtualSize} },
	})
	s.cfg, s.log = cfg, s.w.Logger()
	s.phased = worker.PhasedJobs[schemas.ConverterPhase]{Worker: s.w, Store: store, As: asJobError, Code: failureCode,
		Step: stepFailed, Upload: schemas.ConverterPhaseUpload}
	return s
}

// Run consumes commands and serves queries until ctx ends. Jobs in flight
// when it ends are abandoned and their commands redelivered later.
func (s *Service) Run(ctx context.Context) error { return s.w.Run(ctx) }

// handle dispatches a command to its handler.
func (s *Service) handle(ctx context.Context, m *bus.Msg) error {
	trace.SpanFromContext(ctx).SetAttributes(attribute.String("slipway.service", Name))
	switch m.Name {
	case schemas.CommandConverterImport:
		return s.handleImport(ctx, m)
	case schemas.CommandConverterCreateBlank:
		return s.handleCreateBlank(ctx, m)
	case schemas.CommandConverterOvaUnpack:
		return s.handleOvaUnpack(ctx, m)
	case schemas.CommandConverterSnapshot:
		return s.handleSnapshot(ctx, m)
	}
	return bus.Terminal(fmt.Errorf("converter: unknown command %q (import, create-blank, ova-unpack, snapshot)", m.Subject))
}

// span starts a child span of a job phase.
func (s *Service) span(ctx context.Context, name string, imageID int64) (context.Context, trace.Span) {
	return s.tracer.Start(ctx, "converter."+name, trace.WithAttributes(
		attribute.String("slipway.service", Name),
		attribute.Int64("slipway.image_id", imageID)))
}

func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

func idToken(imageID int64) string { return worker.Token(imageID) }

// Formats is what the formats endpoint answers.
type Formats = schemas.ConverterFormatsReply

// SupportedFormats lists what the converter reads and writes.
func SupportedFormats() Formats {
	filesystems := make([]schemas.Filesystem, len(blank.Filesystems))
	for i, fs := range blank.Filesystems {
		filesystems[i] = schemas.Filesystem(fs)
	}
	return Formats{
		Input: []schemas.DiskFormat{schemas.DiskFormatRaw, schemas.DiskFormatQcow2, schemas.DiskFormatVMDK, schemas.DiskFormatVDI,
			schemas.DiskFormatVPC, schemas.DiskFormatVHDX, schemas.DiskFormatISO, schemas.DiskFormatLUKS},
		Output: []schemas.DiskFormat{schemas.DiskFormatRaw, schemas.DiskFormatQcow2, schemas.DiskFormatVMDK, schemas.DiskFormatVDI,
			schemas.DiskFormatVPC, schemas.DiskFormatVHDX},
		Compression:   []schemas.Compression{schemas.CompressionZstd, schemas.CompressionZlib},
		Decompression: []string{fetch.Gzip, fetch.Bzip2, fetch.XZ, fetch.Zstd},
		Filesystems:   filesystems,
		BlankFormats:  []schemas.DiskFormat{schemas.DiskFormatRaw, schemas.DiskFormatQcow2},
		Sources:       []string{"s3", "http", "https"},
	}
}

func (s *Service) queryFormats(context.Context, []byte) (any, error) { return SupportedFormats(), nil }

// jobError is a failed job: where it failed and whether retrying can help.
type jobError = worker.PhaseError[schemas.ConverterPhase]

// failureCode is the code of a failure for its failed event: what the
// source or the command says (source errors carry theirs), else the kind
// of failure.
func failureCode(err error) string {
	var noSpace *fetch.NoSpaceError
	switch {
	case errors.Is(err, errInvalid):
		return schemas.CodeInvalidCommand
	case errors.Is(err, inspect.ErrRefused), errors.Is(err, qemuimg.ErrUnsafe), errors.Is(err, qemuimg.ErrCorrupt),
		errors.Is(err, qemuimg.ErrPath), errors.Is(err, errPackage):
		return schemas.CodeInvalidInput
	case errors.Is(err, blob.ErrTaken):
		return schemas.CodeConflict
	case errors.Is(err, diskspace.ErrNoSpace), errors.As(err, &noSpace):
		return schemas.CodeUnavailable
	}
	return bus.CodeOf(err)
}

// errInvalid marks a command that is wrong as sent.
var errInvalid = worker.ErrInvalid

// failed classifies err from phase.
func failed(phase schemas.ConverterPhase, err error) *jobError {
	return &jobError{Phase: phase, Err: err, Terminal: isTerminal(phase, err)}
}

// isTerminal decides whether retrying could help. Cancellation and a full
// disk always may; network phases are terminal only for answers that will
// not change; local phases fail the same way on the same bytes.
func isTerminal(phase schemas.ConverterPhase, err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, errInvalid), errors.Is(err, inspect.ErrRefused), errors.Is(err, blob.ErrTaken),
		errors.Is(err, qemuimg.ErrUnsafe), errors.Is(err, qemuimg.ErrCorrupt), errors.Is(err, qemuimg.ErrPath),
		errors.Is(err, errPackage):
		return true
	case errors.Is(err, diskspace.ErrNoSpace):
		return false
	}
	var noSpace *fetch.NoSpaceError
	if errors.As(err, &noSpace) {
		return false
	}
	switch phase {
	case schemas.ConverterPhaseFetch:
		return fetch.IsPermanent(err)
	case schemas.ConverterPhaseUpload:
		return blob.IsClientError(err)
	}
	return true
}

// Ready is closed once the converter consumes commands and serves queries.
func (s *Service) Ready() <-chan struct{} { return s.w.Ready() }
