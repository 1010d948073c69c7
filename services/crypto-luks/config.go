package cryptoluks

import (
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// Environment variables read by ConfigFromEnv, besides those every worker
// reads (worker.ConfigFromEnv) and the KEK variables of package envelope
// (SLIPWAY_LUKS_KEK, SLIPWAY_LUKS_KEK_FILE, SLIPWAY_LUKS_OLD_KEK_FILES).
const (
	EnvIterTime    = "SLIPWAY_LUKS_ITER_TIME"
	EnvQemuImg     = "SLIPWAY_QEMU_IMG"
	EnvConcurrency = "SLIPWAY_LUKS_CONCURRENCY"
)

// ConfigFromEnv reads the service's variables (see the README). With no KEK
// configured it uses defaultKEKFile, creating it (mode 0600) when missing,
// or fails with keywrap.ErrNoKEK when defaultKEKFile is empty: the
// service binary never invents a key nobody knows about.
func ConfigFromEnv(defaultKEKFile string) (Config, error) {
	var env run.EnvReader
	var err error
	cfg := Config{QemuImg: run.Env(EnvQemuImg, "")}
	cfg.Config, err = worker.ConfigFromEnv(EnvConcurrency)
	env.Check(err)
	cfg.Keys, err = keywrap.FromEnv(defaultKEKFile)
	env.Check(err)
	cfg.IterTime = env.Duration(EnvIterTime, luks.DefaultIterTime)
	cfg.Locations, err = blob.LocationsFromEnv()
	env.Check(err)
	return cfg, env.Err()
}
