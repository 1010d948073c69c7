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
	EnvTempDir          = worker.EnvTempDir
	EnvIterTime         = "SLIPWAY_LUKS_ITER_TIME"
	EnvQemuImg          = "SLIPWAY_QEMU_IMG"
	EnvConcurrency      = "SLIPWAY_LUKS_CONCURRENCY"
	EnvProgressInterval = worker.EnvProgressInterval
)

// ConfigFromEnv reads the service's variables (see the README). With no KEK
// configured it uses defaultKEKFile, creating it (mode 0600) when missing,
// or fails with keywrap.ErrNoKEK when defaultKEKFile is empty: the
// service binary never invents a key nobody knows about.
func ConfigFromEnv(defaultKEKFile string) (Config, error) {
	w, err := worker.ConfigFromEnv(EnvConcurrency)
	errs := []error{err}
	cfg := Config{TempDir: w.TempDir, Concurrency: w.Concurrency, ProgressInterval: w.ProgressInterval,
		JobDeadline: w.JobDeadline}
	cfg.Keys, err = keywrap.FromEnv(defaultKEKFile)
	errs = append(errs, err)
	cfg.QemuImg = run.Env(EnvQemuImg, "")
	cfg.IterTime, err = run.EnvDuration(EnvIterTime, luks.DefaultIterTime)
	errs = append(errs, err)
	cfg.Locations, err = blob.LocationsFromEnv()
	errs = append(errs, err)
	return cfg, errors.Join(errs...)
}
