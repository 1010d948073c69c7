package builder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/flatten"
)

// Name is the service name: subjects, durable consumer, micro service.
const Name = schemas.ServiceBuilder

// Version is reported by the micro service.
const Version = "0.1.0"

// GuestInitName is the guest init binary's file name.
const GuestInitName = "slipway-init"

// Config tunes the service. The zero value works where a guest init
// binary can be found (see GuestInit).
type Config struct {
	// Config is what every worker tunes. The scratch directory holds the
	// jobs' working files: the pulled layers, the flattened tree and the
	// built image, each removed as soon as the next step no longer needs
	// it.
	worker.Config
	// GuestInit is the static guest init binary injected at
	// /.slipway/init. Default: slipway-init beside the running executable,
	// else bin/slipway-init under the working directory.
	GuestInit string
	// Registry configures registry access (mirrors, credentials, the
	// guard of the addresses dialed: nil Registry.Guard refuses loopback,
	// private and other special addresses, see package netguard); its
	// Platform and Progress are set per job.
	Registry oci.Options
	// InsecureRegistries lists registry hosts ("host:port") that may be
	// reached over plain HTTP; a job sets Registry.Insecure when its
	// image's registry is one of them.
	InsecureRegistries []string
	// Flatten bounds and shapes layer extraction; the zero value is
	// flatten's default policy.
	Flatten flatten.Policy
	// XZBinary decompresses rootfs tarballs compressed with xz in a child
	// process (see fetch.Options.XZBinary): about twice as fast as the Go
	// decoder, on its own core. Default: xz on the PATH; "-" or none
	// found uses the Go decoder.
	XZBinary string
	// Locations are the buckets destinations are checked against; zero
	// means blob.DefaultLocations() (ConfigFromEnv reads
	// blob.LocationsFromEnv).
	Locations blob.Locations
	// Ext4Writer makes ext4 images: Ext4WriterNative (the default, "")
	// or Ext4WriterMkfs.
	Ext4Writer string
}

// Service is the builder.
type Service struct {
	store *blob.Store
	cfg   Config
	log   *slog.Logger
	w     *worker.Worker
	jobs  worker.Tracker[schemas.BuilderPhase, JobStatus]
	// phased settles the jobs and rejects what cannot be understood.
	phased worker.PhasedJobs[schemas.BuilderPhase]
}

// New returns a builder publishing on b and storing in store.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	if cfg.GuestInit == "" {
		cfg.GuestInit = DefaultGuestInit()
	}
	switch cfg.XZBinary {
	case "":
		cfg.XZBinary, _ = exec.LookPath("xz")
	case "-":
		cfg.XZBinary = ""
	}
	if len(cfg.Locations.DatastoreBuckets) == 0 && cfg.Locations.UploadBucket == "" {
		cfg.Locations = blob.DefaultLocations()
	}
	s := &Service{store: store}
	s.w = worker.New(b, cfg.Config, worker.Spec{
		Name: Name, Version: Version, Description: "Builds VM disks from container images",
		Handle:  s.handle,
		Jobs:    &s.jobs,
		Running: func() []any { return []any{"guest_init", s.cfg.GuestInit} },
	})
	s.cfg, s.log = cfg, s.w.Logger()
	s.phased = worker.PhasedJobs[schemas.BuilderPhase]{Worker: s.w, Store: store, As: asJobError, Code: failureCode,
		Step: stepFailed, Upload: schemas.BuilderPhaseUpload}
	return s
}

// DefaultGuestInit finds the guest init binary: slipway-init beside the
// running executable, else bin/slipway-init under the working directory
// (a checkout after `make build`). It returns the first candidate when
// none exists, so the error names a path.
func DefaultGuestInit() string { return run.FindBinary(GuestInitName) }

// errNoGuestInit marks a builder that cannot inject its init: the command
// fails terminally with what to do.
var errNoGuestInit = errors.New("no guest init binary")

// checkGuestInit makes sure the init binary is a regular file.
func (s *Service) checkGuestInit() error {
	fi, err := os.Stat(s.cfg.GuestInit)
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		return fmt.Errorf("%w at %s (%v): build it with `make build` or `go build -o bin/slipway-init ./services/builder/cmd/slipway-init`, or set %s",
			errNoGuestInit, s.cfg.GuestInit, err, EnvGuestInit)
	}
	return nil
}

// Run consumes commands and serves queries until ctx ends. Jobs in flight
// when it ends are abandoned and their commands redelivered later.
func (s *Service) Run(ctx context.Context) error {
	if err := s.checkGuestInit(); err != nil {
		// Disk images still build; container images fail with this message.
		s.log.Warn("builder: container images cannot be built", "err", err)
	}
	return s.w.Run(ctx)
}

// handle dispatches a command to its handler.
func (s *Service) handle(ctx context.Context, m *bus.Msg) error {
	if m.Name == schemas.CommandBuilderBuild {
		return s.handleBuild(ctx, m)
	}
	return bus.Terminal(fmt.Errorf("builder: unknown command %q (build)", m.Subject))
}

func idToken(imageID int64) string { return worker.Token(imageID) }

// Ready is closed once the builder consumes commands and serves queries.
func (s *Service) Ready() <-chan struct{} { return s.w.Ready() }
