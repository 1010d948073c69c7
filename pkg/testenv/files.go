package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
)

// Download copies the object at url (s3://bucket/key) of store into the
// file path and returns path.
func Download(t testing.TB, ctx context.Context, store *blob.Store, url, path string) string {
	t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Client().FGetObject(ctx, bucket, key, path, minio.GetObjectOptions{}); err != nil {
		t.Fatalf("download %s: %v", url, err)
	}
	return path
}

// LeftEmpty fails the test when dir is not empty at its end. Cleanups run
// last-registered first: call it before starting what must clean dir up.
func LeftEmpty(t testing.TB, dir string) {
	t.Cleanup(func() {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("temp dir %s not cleaned: %d entries left", dir, len(entries))
		}
	})
}

// Script writes body, a shell script starting with its #! line, as the
// executable file name in a new temporary directory, and returns its path:
// a stand-in for a program a test wants to watch or hold.
func Script(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
