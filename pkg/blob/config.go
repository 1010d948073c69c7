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
}

// EnvKeysFile names a keys file (see ReadKeys): how a service binary gets
// its own S3 identity (written by `slipway s3 provision`, mounted from a
// secret).
const EnvKeysFile = "SLIPWAY_S3_KEYS_FILE"

// ErrNoKeys says no S3 keys were given: there is no default.
var ErrNoKeys = errors.New("no S3 keys: set " + EnvKeysFile + " (a keys file written by `slipway s3 provision`) or SLIPWAY_S3_ACCESS_KEY and SLIPWAY_S3_SECRET_KEY")

// ConfigFromEnv reads SLIPWAY_S3_ENDPOINT (default 127.0.0.1:9000), the
// keys (SLIPWAY_S3_KEYS_FILE, else SLIPWAY_S3_ACCESS_KEY and
// SLIPWAY_S3_SECRET_KEY; no default: ErrNoKeys), SLIPWAY_S3_SECURE,
// SLIPWAY_S3_REGION, SLIPWAY_S3_PART_SIZE (bytes) and the remotes file
// of SLIPWAY_S3_REMOTES (ReadRemotes; none when unset).
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
