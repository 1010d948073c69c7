package up

import (
	"context"
	"path/filepath"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/services/builder"
	"github.com/slipway/slipway/services/catalog"
	"github.com/slipway/slipway/services/converter"
	cryptoluks "github.com/slipway/slipway/services/crypto-luks"
	kernelregistry "github.com/slipway/slipway/services/kernel-registry"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/qemu"
	marketdockerhub "github.com/slipway/slipway/services/market-dockerhub"
)

// runner is a service: Run serves until ctx ends, drains, and returns.
type runner interface {
	Run(ctx context.Context) error
}

// readier is a service that tells when it consumes and answers, so `up`
// announces itself only once a command sent right away would be served.
type readier interface {
	Ready() <-chan struct{}
}

// accelerated is the launcher: once ready, it knows which accelerator its
// probe proved.
type accelerated interface {
	Accelerator() qemu.Accelerator
}

// service is one in-process service and how to build it on its own bus
// connection.
type service struct {
	name  string
	build func(b *bus.Bus, store *blob.Store) runner
}

// services lists every implemented service. Each gets its own bus
// connection, as it would running as its own binary.
func (s *Stack) services() []service {
	log := s.cfg.Logger
	// The catalog's default datastores and upload bucket, and the import
	// buckets an operator lists in SLIPWAY_IMPORT_BUCKETS: every service
	// checks S3 locations against the same buckets.
	loc := blob.DefaultLocations()
	if env, err := blob.LocationsFromEnv(); err != nil {
		log.Warn("ignoring "+blob.EnvImportBuckets, "err", err)
	} else {
		loc.ImportBuckets = env.ImportBuckets
	}
	return []service{
		{"catalog", func(b *bus.Bus, st *blob.Store) runner {
			// The digest is checked before an image becomes READY, as the
			// catalog's own binary does by default.
			return catalog.New(b, st, catalog.Config{User: s.cfg.User, VerifyDigest: true, ImportBuckets: loc.ImportBuckets, Logger: log})
		}},
		{"converter", func(b *bus.Bus, st *blob.Store) runner {
			// Work files next to the rest of the stack's data rather than
			// in /tmp, which is often a small tmpfs.
			return converter.New(b, st, converter.Config{TempDir: filepath.Join(s.cfg.DataDir, "work"), Locations: loc,
				Logger: log.With("service", "converter")})
		}},
		{marketdockerhub.ServiceName, func(b *bus.Bus, _ *blob.Store) runner {
			cfg, err := marketdockerhub.ConfigFromEnv()
			if err != nil {
				log.Warn("market-dockerhub: ignoring its environment", "err", err)
				cfg = marketdockerhub.Config{}
			}
			if s.cfg.User != "" {
				cfg.User = s.cfg.User
			}
			cfg.Logger = log
			return marketdockerhub.New(b, cfg)
		}},
		{builder.Name, func(b *bus.Bus, st *blob.Store) runner {
			// Registry mirrors, credentials and the guest init binary come
			// from the same variables as the builder binary's.
			cfg, err := builder.ConfigFromEnv()
			if err != nil {
				log.Warn("builder: ignoring its environment", "err", err)
				cfg = builder.Config{}
			}
			cfg.TempDir, cfg.Logger = filepath.Join(s.cfg.DataDir, "work"), log.With("service", builder.Name)
			cfg.Locations = loc
			return builder.New(b, st, cfg)
		}},
		{cryptoluks.Name, func(b *bus.Bus, st *blob.Store) runner {
			// The KEK comes from SLIPWAY_LUKS_KEK(_FILE) like the binary's;
			// without them the stack keeps its own in its data dir, made
			// (mode 0600) on first start.
			return cryptoluks.NewFromEnv(b, st, cryptoluks.Config{TempDir: filepath.Join(s.cfg.DataDir, "work"), Locations: loc,
				Logger: log.With("service", cryptoluks.Name)}, filepath.Join(s.cfg.DataDir, "luks.kek"))
		}},
		{kernelregistry.Name, func(b *bus.Bus, st *blob.Store) runner {
			// The slipway-initrd binary and initrd modules come from the same
			// variables as the kernel-registry binary's.
			cfg, err := kernelregistry.ConfigFromEnv()
			if err != nil {
				log.Warn("kernel-registry: ignoring its environment", "err", err)
				cfg = kernelregistry.Config{}
			}
			cfg.TempDir, cfg.Logger = filepath.Join(s.cfg.DataDir, "work"), log.With("service", kernelregistry.Name)
			return kernelregistry.New(b, st, cfg)
		}},
		{launcher.Name, func(b *bus.Bus, st *blob.Store) runner {
			// QEMU, acceleration and timeouts come from the same variables
			// as the launcher binary's; VMs, the blob cache and consoles
			// live beside the rest of the stack's data.
			cfg, err := launcher.ConfigFromEnv()
			if err != nil {
				log.Warn("launcher: ignoring its environment", "err", err)
				cfg = launcher.Config{}
			}
			if cfg.WorkDir == "" {
				cfg.WorkDir = filepath.Join(s.cfg.DataDir, "launcher")
			}
			cfg.Logger = log.With("service", launcher.Name)
			return launcher.New(b, st, cfg)
		}},
	}
}
