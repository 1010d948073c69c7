package blob_test

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
)

func TestParseURL(t *testing.T) {
	tests := []struct {
		in, bucket, key, err string
	}{
		{in: "s3://slipway-default/images/1/disk.qcow2", bucket: "slipway-default", key: "images/1/disk.qcow2"},
		{in: "s3://b12/k", bucket: "b12", key: "k"},
		{in: "s3://bucket/dir/with space/%41?x#y", bucket: "bucket", key: "dir/with space/%41?x#y"},
		{in: "s3://bucket/", err: "missing key"},
		{in: "s3://bucket", err: "missing key"},
		{in: "s3:///key", err: "missing bucket"},
		{in: "s3://", err: "missing bucket"},
		{in: "https://host/bucket/key", err: `scheme "https" is not s3`},
		{in: "S3://bucket/key", err: `scheme "S3" is not s3`},
		{in: "bucket/key", err: "want s3://bucket/key"},
		{in: "", err: "want s3://bucket/key"},
		{in: "s3://Bad_Bucket/key", err: `bucket "Bad_Bucket"`},
		{in: "s3://ab/key", err: `bucket "ab"`},
	}
	for _, tc := range tests {
		b, k, err := blob.ParseURL(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseURL(%q) error = %v, want one containing %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || b != tc.bucket || k != tc.key {
			t.Errorf("ParseURL(%q) = %q, %q, %v; want %q, %q", tc.in, b, k, err, tc.bucket, tc.key)
			continue
		}
		if got := blob.URL(b, k); got != tc.in {
			t.Errorf("URL(%q, %q) = %q, want %q", b, k, got, tc.in)
		}
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv("SLIPWAY_S3_ENDPOINT", "")
	t.Setenv("SLIPWAY_S3_ACCESS_KEY", "")
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "")
	t.Setenv("SLIPWAY_S3_SECURE", "")
	cfg := blob.ConfigFromEnv()
	if cfg.Endpoint != "127.0.0.1:9000" || cfg.AccessKey != "slipway" || cfg.SecretKey != "slipway-secret" || cfg.Secure {
		t.Fatalf("defaults = %+v", cfg)
	}
	t.Setenv("SLIPWAY_S3_ENDPOINT", "minio:9000")
	t.Setenv("SLIPWAY_S3_SECURE", "true")
	t.Setenv("SLIPWAY_S3_ACCESS_KEY", "ak")
	cfg = blob.ConfigFromEnv()
	if cfg.Endpoint != "minio:9000" || !cfg.Secure || cfg.AccessKey != "ak" {
		t.Fatalf("from env = %+v", cfg)
	}
}

func TestNewValidates(t *testing.T) {
	for _, tc := range []struct {
		cfg blob.Config
		err string
	}{
		{blob.Config{}, "empty S3 endpoint"},
		{blob.Config{Endpoint: "ftp://h:1"}, "scheme must be http or https"},
		{blob.Config{Endpoint: "http://h:1/path"}, "path"},
		{blob.Config{Endpoint: "h:1", PartSize: 1 << 20}, "below the S3 minimum"},
	} {
		if _, err := blob.New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.err) {
			t.Errorf("New(%+v) error = %v, want %q", tc.cfg, err, tc.err)
		}
	}
	for _, ep := range []string{"h:1", "http://h:1", "https://h:1/"} {
		if _, err := blob.New(blob.Config{Endpoint: ep}); err != nil {
			t.Errorf("New(%q): %v", ep, err)
		}
	}
}
