package testenv

import (
	"context"
	"crypto/sha256"
	"io"
	"os"
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

// OpenDir makes a directory with mode perm in the system's temporary
// directory and removes it when the test ends. Unlike t.TempDir(), whose
// parent is 0700, it can be reached by a process of another uid (QEMU
// run as a VM's user).
func OpenDir(t testing.TB, prefix string, perm os.FileMode) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, perm); err != nil {
		t.Fatal(err)
	}
	return dir
}

// FileSHA256 is the SHA-256 of the file at path, read as a stream.
func FileSHA256(t testing.TB, path string) [32]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}
