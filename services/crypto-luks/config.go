package cryptoluks

import (
	"errors"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// Environment variables read by ConfigFromEnv, besides the KEK variables of
// package envelope (SLIPWAY_LUKS_KEK, SLIPWAY_LUKS_KEK_FILE,
// SLIPWAY_LUKS_OLD_KEK_FILES).
const (
	EnvTempDir          = "SLIPWAY_TMPDIR"
	EnvIterTime         = "SLIPWAY_LUKS_ITER_TIME"
	EnvQemuImg          = "SLIPWAY_QEMU_IMG"
	EnvConcurrency      = "SLIPWAY_LUKS_CONCURRENCY"
	EnvProgressInterval = "SLIPWAY_PROGRESS_INTERVAL"
)

// ConfigFromEnv reads the service's variables (see the README). With no KEK
// configured it uses defaultKEKFile, creating it (mode 0600) when missing,
// or fails with keywrap.ErrNoKEK when defaultKEKFile is empty: the
// service binary never invents a key nobody knows about.
func ConfigFromEnv(defaultKEKFile string) (Config, error) {
	var cfg Config
	var errs []error
	var err error
	cfg.Keys, err = keywrap.FromEnv(defaultKEKFile)
	errs = append(errs, err)
	cfg.TempDir = run.Env(EnvTempDir, "")
	cfg.QemuImg = run.Env(EnvQemuImg, "")
	cfg.IterTime, err = run.EnvDuration(EnvIterTime, luks.DefaultIterTime)
	errs = append(errs, err)
	cfg.Concurrency, err = run.EnvInt(EnvConcurrency, 1)
	errs = append(errs, err)
	cfg.ProgressInterval, err = run.EnvDuration(EnvProgressInterval, DefaultProgressInterval)
	errs = append(errs, err)
	cfg.Locations, err = blob.LocationsFromEnv()
	errs = append(errs, err)
	cfg.JobDeadline, err = worker.JobDeadlineFromEnv()
	errs = append(errs, err)
	return cfg, errors.Join(errs...)
}
