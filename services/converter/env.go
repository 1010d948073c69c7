package converter

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
)

// Environment variables read by ConfigFromEnv, besides those every worker
// reads (worker.ConfigFromEnv).
const (
	EnvMaxVirtualSize = "SLIPWAY_MAX_VIRTUAL_SIZE"
	EnvMaxInputBytes  = "SLIPWAY_MAX_INPUT_BYTES"
	EnvConcurrency    = "SLIPWAY_CONVERTER_CONCURRENCY"
	EnvQemuImg        = "SLIPWAY_QEMU_IMG"
)

// ConfigFromEnv reads the converter's variables: SLIPWAY_TMPDIR,
// SLIPWAY_MAX_VIRTUAL_SIZE and SLIPWAY_MAX_INPUT_BYTES (bytes, or with a
// binary suffix: 500M, 64G, 1T), SLIPWAY_CONVERTER_CONCURRENCY,
// SLIPWAY_PROGRESS_INTERVAL (a Go duration), SLIPWAY_QEMU_IMG (the
// qemu-img binary), SLIPWAY_FETCH_ALLOW (what http(s) sources may reach
// beyond public addresses; see package netguard) and the buckets of
// blob.LocationsFromEnv (SLIPWAY_DATASTORE_DEFAULT_BUCKET,
// SLIPWAY_DATASTORE_FILES_BUCKET, SLIPWAY_UPLOAD_BUCKET,
// SLIPWAY_IMPORT_BUCKETS). Unset variables keep New's defaults; the
// error names every variable that is wrong.
func ConfigFromEnv() (Config, error) {
	var env run.EnvReader
	var err error
	cfg := Config{QemuImg: &qemuimg.Runner{Binary: run.Env(EnvQemuImg, "")}}
	cfg.Config, err = worker.ConfigFromEnv(EnvConcurrency)
	env.Check(err)
	cfg.MaxVirtualSize, err = envBytes(EnvMaxVirtualSize)
	env.Check(err)
	cfg.MaxInputBytes, err = envBytes(EnvMaxInputBytes)
	env.Check(err)
	cfg.Fetch.Guard, err = netguard.FromEnv()
	env.Check(err)
	cfg.Locations, err = blob.LocationsFromEnv()
	env.Check(err)
	return cfg, env.Err()
}

// envBytes reads a size: digits with an optional K, M, G or T suffix
// (powers of 1024, an "iB" or "B" after it allowed); unset gives 0.
func envBytes(key string) (int64, error) {
	v := strings.TrimSpace(os.Getenv(key))
	if v == "" {
		return 0, nil
	}
	n, err := ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: %w", key, v, err)
	}
	return n, nil
}

// ParseBytes parses "1099511627776", "512M", "64GiB", "1T".
func ParseBytes(s string) (int64, error) {
	u := strings.ToUpper(strings.TrimSpace(s))
	u = strings.TrimSuffix(strings.TrimSuffix(u, "B"), "I")
	shift := 0
	if u != "" {
		if i := strings.IndexByte("KMGT", u[len(u)-1]); i >= 0 {
			shift = 10 * (i + 1)
			u = strings.TrimSpace(u[:len(u)-1])
		}
	}
	n, err := strconv.ParseInt(u, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("want a positive size in bytes, optionally with K, M, G or T (binary units)")
	}
	if n > (1<<62)>>shift {
		return 0, fmt.Errorf("size too large")
	}
	return n << shift, nil
}
