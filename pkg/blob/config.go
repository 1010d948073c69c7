package blob

import (
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
	Secure    bool
	Region    string
	// CAFile is a PEM file of the certificate authorities trusted for an
	// https endpoint instead of the system's (slipway up --tls and compose
	// make their own CA, package tlsca).
	CAFile string
	// PartSize bounds multipart parts, and with them the memory one upload
	// uses. 0 means DefaultPartSize.
	PartSize uint64
}

// ConfigFromEnv reads SLIPWAY_S3_ENDPOINT (default 127.0.0.1:9000),
// SLIPWAY_S3_ACCESS_KEY (default "slipway"), SLIPWAY_S3_SECRET_KEY (default
// "slipway-secret"), SLIPWAY_S3_SECURE, SLIPWAY_S3_REGION and
// SLIPWAY_S3_PART_SIZE (bytes).
func ConfigFromEnv() Config {
	cfg := Config{
		Endpoint:  envOr("SLIPWAY_S3_ENDPOINT", "127.0.0.1:9000"),
		AccessKey: envOr("SLIPWAY_S3_ACCESS_KEY", "slipway"),
		SecretKey: envOr("SLIPWAY_S3_SECRET_KEY", "slipway-secret"),
		Region:    os.Getenv("SLIPWAY_S3_REGION"),
	}
	if b, err := strconv.ParseBool(strings.TrimSpace(os.Getenv("SLIPWAY_S3_SECURE"))); err == nil {
		cfg.Secure = b
	}
	if n, err := strconv.ParseUint(strings.TrimSpace(os.Getenv("SLIPWAY_S3_PART_SIZE")), 10, 64); err == nil {
		cfg.PartSize = n
	}
	return cfg
}

func envOr(key, def string) string {
	if v := strings.TrimSpace(os.Getenv(key)); v != "" {
		return v
	}
	return def
}
