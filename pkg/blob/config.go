package blob

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DefaultPartSize is the multipart part size used when Config.PartSize is 0.
// minio-go's own default for streams of unknown size is large enough to make
// it allocate over 500 MiB of part buffers, so Slipway never relies on it.
const DefaultPartSize uint64 = 16 << 20

// DefaultPartsInFlight is Config.PartsInFlight when it is 0: the part
// being read and two being sent, 48 MiB with the default part size.
// BenchmarkPutFile measured 1.15-1.5x the serial rate with 2 to 6 on a
// loaded 2-core machine, with no clear order among them; 3 keeps two
// requests going while the source is read, which hides a request's
// latency to a remote store.
const DefaultPartsInFlight = 3

// minPartSize is the S3 lower bound for every part but the last.
const minPartSize uint64 = 5 << 20

// Config says how to reach an S3-compatible store.
type Config struct {
	// Endpoint is "host:port" or a URL ("http://host:port", "https://host").
	// A URL scheme overrides Secure.
	Endpoint  string
	AccessKey string
	SecretKey string
	// SessionToken goes with temporary keys (STS).
	SessionToken string
	Secure       bool
	Region       string
	// CAFile is a PEM file of the certificate authorities trusted for an
	// https endpoint instead of the system's (slipway up --tls and compose
	// make their own CA, package tlsca).
	CAFile string
	// PartSize bounds multipart parts, and with them the memory one upload
	// uses. 0 means DefaultPartSize.
	PartSize uint64
	// PublicEndpoint is how users reach the server, when it is not
	// Endpoint (set for a remote's store, from its public_endpoint).
	PublicEndpoint string
	// Remotes are the other servers that hold datastore buckets; a Store
	// routes each call by its bucket (remote.go).
	Remotes []Remote
	// PartsInFlight is how many parts of one multipart upload may be held
	// at once, each in a buffer of its own: the part being read from the
	// source and those being sent. 1 is strictly serial (read a part, send
	// it, then read the next); with more, parts are read while the ones
	// before them go up, and up to PartsInFlight are sent at once when the
	// source is faster than the store. One upload holds at most
	// PartsInFlight part buffers. 0 means DefaultPartsInFlight.
	PartsInFlight int
}

// EnvKeysFile names a keys file (see ReadKeys): how a service binary gets
// its own S3 identity (written by `slipway s3 provision`, mounted from a
// secret).
const EnvKeysFile = "SLIPWAY_S3_KEYS_FILE"

// EnvPartsInFlight sets Config.PartsInFlight.
const EnvPartsInFlight = "SLIPWAY_S3_PARTS_IN_FLIGHT"

// ErrNoKeys says no S3 keys were given: there is no default.
var ErrNoKeys = errors.New("no S3 keys: set " + EnvKeysFile + " (a keys file written by `slipway s3 provision`) or SLIPWAY_S3_ACCESS_KEY and SLIPWAY_S3_SECRET_KEY")

// ConfigFromEnv reads SLIPWAY_S3_ENDPOINT (default 127.0.0.1:9000), the
// keys (SLIPWAY_S3_KEYS_FILE, else SLIPWAY_S3_ACCESS_KEY and
// SLIPWAY_S3_SECRET_KEY; no default: ErrNoKeys), SLIPWAY_S3_SECURE,
// SLIPWAY_S3_REGION, SLIPWAY_S3_PART_SIZE (bytes), SLIPWAY_S3_PARTS_IN_FLIGHT
// (a positive count; an error otherwise) and the remotes file of
// SLIPWAY_S3_REMOTES (ReadRemotes; none when unset).
func ConfigFromEnv() (Config, error) {
	cfg, err := defaultFromEnv()
	if err != nil {
		return cfg, err
	}
	if f := strings.TrimSpace(os.Getenv(EnvRemotes)); f != "" {
		if cfg.Remotes, err = ReadRemotes(f); err != nil {
			return cfg, fmt.Errorf("%s: %w", EnvRemotes, err)
		}
	}
	return cfg, nil
}

// defaultFromEnv reads the default server's variables.
func defaultFromEnv() (Config, error) {
	cfg := Config{
		Endpoint:  envOr("SLIPWAY_S3_ENDPOINT", "127.0.0.1:9000"),
		AccessKey: os.Getenv("SLIPWAY_S3_ACCESS_KEY"),
		SecretKey: os.Getenv("SLIPWAY_S3_SECRET_KEY"),
		Region:    os.Getenv("SLIPWAY_S3_REGION"),
	}
	if b, err := strconv.ParseBool(strings.TrimSpace(os.Getenv("SLIPWAY_S3_SECURE"))); err == nil {
		cfg.Secure = b
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(os.Getenv("SLIPWAY_S3_PART_SIZE")), 10, 64); err == nil {
		cfg.PartSize = n
	}
	if v := strings.TrimSpace(os.Getenv(EnvPartsInFlight)); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return cfg, fmt.Errorf("%s=%q: want a number of parts, 1 or more", EnvPartsInFlight, v)
		}
		cfg.PartsInFlight = n
	}
	if f := strings.TrimSpace(os.Getenv(EnvKeysFile)); f != "" {
		k, err := ReadKeys(f)
		if err != nil {
			return cfg, fmt.Errorf("%s: %w", EnvKeysFile, err)
		}
		return cfg.WithKeys(k), nil
	}
	if cfg.AccessKey == "" || cfg.SecretKey == "" {
		return cfg, ErrNoKeys
	}
	return cfg, nil
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}
