package up

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"os"
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
	build func(b *bus.Bus, store *blob.Store) (runner, error)
}

// services lists every implemented service. Each gets its own bus
// connection, as it would running as its own binary, and reads the same
// variables as its binary does: an operator's caps (SLIPWAY_MAX_VIRTUAL_SIZE,
// SLIPWAY_MAX_INPUT_BYTES…) hold here too, and a variable that is wrong
// stops `up` with its name rather than being ignored. Work files default
// to the stack's data directory rather than /tmp, which is often a small
// tmpfs.
func (s *Stack) services() []service {
	log := s.cfg.Logger
	work := filepath.Join(s.cfg.DataDir, "work")
	orWork := func(dir string) string {
		if dir == "" {
			return work
		}
		return dir
	}
	return []service{
		{"catalog", func(b *bus.Bus, st *blob.Store) (runner, error) {
			cfg, err := catalog.ConfigFromEnv()
			if s.cfg.User != "" {
				cfg.User = s.cfg.User
			}
			cfg.Logger = log
			return catalog.New(b, st, cfg), err
		}},
		{"converter", func(b *bus.Bus, st *blob.Store) (runner, error) {
			cfg, err := converter.ConfigFromEnv()
			cfg.TempDir, cfg.Logger = orWork(cfg.TempDir), log.With("service", "converter")
			cfg.Fetch.Guard = s.cfg.Guard
			return converter.New(b, st, cfg), err
		}},
		{marketdockerhub.ServiceName, func(b *bus.Bus, _ *blob.Store) (runner, error) {
			cfg, err := marketdockerhub.ConfigFromEnv()
			if s.cfg.User != "" {
				cfg.User = s.cfg.User
			}
			cfg.Guard, cfg.Logger = s.cfg.Guard, log
			return marketdockerhub.New(b, cfg), err
		}},
		{builder.Name, func(b *bus.Bus, st *blob.Store) (runner, error) {
			cfg, err := builder.ConfigFromEnv()
			cfg.TempDir, cfg.Logger = orWork(cfg.TempDir), log.With("service", builder.Name)
			cfg.Registry.Guard = s.cfg.Guard
			return builder.New(b, st, cfg), err
		}},
		{cryptoluks.Name, func(b *bus.Bus, st *blob.Store) (runner, error) {
			// The key-encryption key comes from SLIPWAY_LUKS_KEK(_FILE), or
			// is generated into the data directory (mode 0600) on first
			// start; a bad variable makes Run fail with its name.
			return cryptoluks.NewFromEnv(b, st, cryptoluks.Config{TempDir: work,
				Logger: log.With("service", cryptoluks.Name)}, filepath.Join(s.cfg.DataDir, "luks.kek")), nil
		}},
		{kernelregistry.Name, func(b *bus.Bus, st *blob.Store) (runner, error) {
			cfg, err := kernelregistry.ConfigFromEnv()
			cfg.TempDir, cfg.Logger = orWork(cfg.TempDir), log.With("service", kernelregistry.Name)
			return kernelregistry.New(b, st, cfg), err
		}},
		{launcher.Name, func(b *bus.Bus, st *blob.Store) (runner, error) {
			// VMs, the blob cache and consoles live beside the rest of the
			// stack's data unless SLIPWAY_LAUNCHER_WORK_DIR says otherwise.
			cfg, err := launcher.ConfigFromEnv()
			if cfg.WorkDir == "" {
				cfg.WorkDir = s.launcherWorkDir()
			}
			cfg.Logger = log.With("service", launcher.Name)
			return launcher.New(b, st, cfg), err
		}},
	}
}

// launcherWorkDir is DataDir/launcher. As root the launcher runs QEMU as
// unprivileged uids, which must walk through the data directory to their
// VM directories, so others may search it (not list it). When a directory
// above the data directory is closed to them (a checkout under /root), the
// VMs live under /var/lib/slipway instead, in a directory named after the
// data directory, and the log says so.
func (s *Stack) launcherWorkDir() string {
	dir := filepath.Join(s.cfg.DataDir, "launcher")
	if os.Geteuid() != 0 {
		return dir
	}
	if fi, err := os.Stat(s.cfg.DataDir); err == nil {
		_ = os.Chmod(s.cfg.DataDir, fi.Mode().Perm()|0o001)
	}
	if launcher.Reachable(dir) == nil {
		return dir
	}
	sum := sha256.Sum256([]byte(s.cfg.DataDir))
	moved := filepath.Join("/var/lib/slipway", "up-"+hex.EncodeToString(sum[:6]))
	for _, d := range []string{filepath.Dir(moved), moved} {
		if err := os.MkdirAll(d, 0o711); err == nil {
			_ = os.Chmod(d, 0o711)
		}
	}
	s.cfg.Logger.Info("the data directory is out of reach of QEMU's unprivileged uids: VMs live elsewhere",
		"data_dir", s.cfg.DataDir, "launcher_work_dir", filepath.Join(moved, "launcher"))
	return filepath.Join(moved, "launcher")
}
