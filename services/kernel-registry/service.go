// Package kernelregistry is Slipway's kernel-registry service. It takes
// kernels (an ELF vmlinux, a bzImage, or a Debian linux-image package with
// its modules) from staged uploads, examines them (package kernel), builds
// a minimal initrd from a package's modules (packages deb and initrd),
// registers KERNEL and RAMDISK images in the catalog's files datastore, and
// keeps what it learned of each kernel in KV for the launcher (PVH entry,
// the extracted vmlinux, the initrd built for it). KERNEL images registered
// through the catalog directly are examined when they become READY.
//
// Subjects, configuration and state: README.md.
package kernelregistry

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/kernel-registry/initrd"
)

// Name is the service name: subjects, durable consumer, micro service.
const Name = schemas.ServiceKernelRegistry

// Version is reported by the micro service.
const Version = "0.1.0"

// Defaults of Config.
const (
	DefaultUploadBucket   = "slipway-uploads"
	DefaultFilesBucket    = "slipway-files"
	DefaultFilesDatastore = "files"
	DefaultMaxDeliver     = 5
	DefaultCallTimeout    = time.Minute
)

// Config tunes the service; the zero value works where slipway-initrd can
// be found (initrd.DefaultInit).
type Config struct {
	// Config is what every worker tunes, but MaxDeliver defaults to
	// DefaultMaxDeliver; AckWait, MaxDeliver and JobDeadline (each add's
	// or examination's) tune the consumer of catalog events too. The
	// scratch directory holds each job's files (a kernel package unpacks
	// to about 400 MiB).
	worker.Config
	// UploadBucket holds staged uploads: add's sources, and the kernel and
	// initrd this service stages for the catalog. It must be the catalog's
	// upload bucket. Default slipway-uploads.
	UploadBucket string
	// FilesBucket is the files datastore's bucket, where the vmlinux of a
	// bzImage is kept at kernels/<id>/vmlinux. Default slipway-files.
	FilesBucket string
	// FilesDatastore is the catalog datastore of KERNEL and RAMDISK images.
	// Default files.
	FilesDatastore string
	// Initrd is the slipway-initrd binary; default initrd.DefaultInit().
	Initrd string
	// Modules are the initrd's wanted modules; nil means
	// initrd.DefaultModules.
	Modules []string
	// CallTimeout bounds each catalog call.
	CallTimeout time.Duration
}

// Service is the kernel registry.
type Service struct {
	bus     *bus.Bus
	store   *blob.Store
	cfg     Config
	log     *slog.Logger
	kernels *kvstore.Store[int64, schemas.Kernel]
	added   jetstream.KeyValue // ce-id digest → kernel ID of the adds done
	w       *worker.Worker
	jobs    worker.Tracker[schemas.KernelRegistryPhase, schemas.KernelRegistryJob]
}

// New returns a kernel registry publishing on b and storing in store.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	defaults.Fill(&cfg, Config{UploadBucket: DefaultUploadBucket, FilesBucket: DefaultFilesBucket,
		FilesDatastore: DefaultFilesDatastore, CallTimeout: DefaultCallTimeout})
	cfg.MaxDeliver = defaults.Positive(cfg.MaxDeliver, DefaultMaxDeliver)
	if cfg.Initrd == "" {
		cfg.Initrd = initrd.DefaultInit()
	}
	s := &Service{bus: b, store: store}
	s.w = worker.New(b, cfg.Config, worker.Spec{
		Name: Name, Version: Version, Description: "Kernels and their initrds",
		Handle:  s.handleCommand,
		Jobs:    &s.jobs,
		Queries: map[string]bus.QueryHandler{schemas.QueryKernelRegistryList: s.queryList, schemas.QueryKernelRegistryShow: s.queryShow},
		Start:   s.start,
		Running: func() []any { return []any{"initrd", s.cfg.Initrd} },
	})
	cfg.Config = s.w.Config() // the consumer of catalog events takes the same settings
	s.cfg, s.log = cfg, s.w.Logger()
	return s
}

// Ready is closed once the service consumes and answers.
func (s *Service) Ready() <-chan struct{} { return s.w.Ready() }

// Run consumes commands and catalog events and serves queries until ctx
// ends.
func (s *Service) Run(ctx context.Context) error {
	if _, err := os.Stat(s.cfg.Initrd); err != nil {
		// Kernels still register; packages get no initrd until it exists.
		s.log.Warn("kernel-registry: no slipway-initrd binary: kernel packages will fail", "path", s.cfg.Initrd, "err", err)
	}
	return s.w.Run(ctx)
}

// start opens the kernels' bucket and consumes the catalog's image events.
func (s *Service) start(ctx context.Context, _ string) (func(), error) {
	kv, err := s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), schemas.BucketKernelRegistryKernels), 0)
	if err != nil {
		return nil, err
	}
	s.kernels = openKernels(kv)
	if s.added, err = s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), schemas.BucketKernelRegistryAdded), AddedTTL); err != nil {
		return nil, err
	}
	evts, err := s.bus.ConsumeEvents(ctx, schemas.ConsumerKernelRegistryImages, []string{
		s.bus.EventSubject(schemas.ServiceCatalog, schemas.EventCatalogImageUpdated, ">"),
		s.bus.EventSubject(schemas.ServiceCatalog, schemas.EventCatalogImageDeleted, ">"),
	}, s.handleCatalogEvent, bus.AckWait(s.cfg.AckWait), bus.MaxDeliver(s.cfg.MaxDeliver), bus.JobDeadline(s.cfg.JobDeadline))
	if err != nil {
		return nil, fmt.Errorf("consume catalog events: %w", err)
	}
	return evts.Stop, nil
}

// handleCommand dispatches a command.
func (s *Service) handleCommand(ctx context.Context, m *bus.Msg) error {
	if m.Name == schemas.CommandKernelRegistryAdd {
		return s.handleAdd(ctx, m)
	}
	err := fmt.Errorf("unknown command %q (kernel-registry takes add)", m.Subject)
	s.publishFailed(ctx, m, cmdToken(m), err, schemas.Failure{})
	return bus.Terminal(err)
}
