package blob_test

import (
	"errors"
	"os"
	"path/filepath"
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
	t.Setenv(blob.EnvKeysFile, "")
	// No default key: a service without keys says how to give them.
	if cfg, err := blob.ConfigFromEnv(); !errors.Is(err, blob.ErrNoKeys) || cfg.Endpoint != "127.0.0.1:9000" || cfg.Secure {
		t.Fatalf("without keys = %+v, %v; want ErrNoKeys", cfg, err)
	}
	t.Setenv("SLIPWAY_S3_ENDPOINT", "minio:9000")
	t.Setenv("SLIPWAY_S3_SECURE", "true")
	t.Setenv("SLIPWAY_S3_ACCESS_KEY", "ak")
	if _, err := blob.ConfigFromEnv(); !errors.Is(err, blob.ErrNoKeys) {
		t.Fatalf("an access key without its secret: %v, want ErrNoKeys", err)
	}
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "sk")
	cfg, err := blob.ConfigFromEnv()
	if err != nil || cfg.Endpoint != "minio:9000" || !cfg.Secure || cfg.AccessKey != "ak" || cfg.SecretKey != "sk" {
		t.Fatalf("from env = %+v, %v", cfg, err)
	}
	// A keys file wins over the variables.
	file := filepath.Join(t.TempDir(), "converter.json")
	if err := blob.WriteKeys(file, blob.Keys{AccessKey: "slipway-converter", SecretKey: "s3cr3t-from-file"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("keys file mode: %v %v, want 0600", fi, err)
	}
	t.Setenv(blob.EnvKeysFile, file)
	if cfg, err = blob.ConfigFromEnv(); err != nil || cfg.AccessKey != "slipway-converter" || cfg.SecretKey != "s3cr3t-from-file" {
		t.Fatalf("from keys file = %+v, %v", cfg, err)
	}
	if err := os.WriteFile(file, []byte(`{"access_key":"x"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = blob.ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), blob.EnvKeysFile) {
		t.Fatalf("half a keys file: %v, want an error naming %s", err, blob.EnvKeysFile)
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

// Config.EndpointURL reads the endpoint as New does: the scheme a URL names wins
// over Secure, a path or another scheme is refused.
func TestConfigEndpointURL(t *testing.T) {
	for _, tc := range []struct {
		cfg  blob.Config
		want string
	}{
		{blob.Config{Endpoint: "h:1"}, "http://h:1"},
		{blob.Config{Endpoint: " h:1 ", Secure: true}, "https://h:1"},
		{blob.Config{Endpoint: "http://h:1/", Secure: true}, "http://h:1"},
		{blob.Config{Endpoint: "https://h:1"}, "https://h:1"},
	} {
		if got, err := tc.cfg.EndpointURL(); err != nil || got != tc.want {
			t.Errorf("EndpointURL(%+v) = %q, %v; want %q", tc.cfg, got, err, tc.want)
		}
	}
	for _, ep := range []string{"", "ftp://h:1", "http://h:1/path", "http://"} {
		if u, err := (blob.Config{Endpoint: ep}).EndpointURL(); err == nil {
			t.Errorf("EndpointURL(%q) = %q, want an error", ep, u)
		}
	}
}
