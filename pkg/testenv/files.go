package testenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

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

// AssertS3Checksum fails the test unless reported, a writer's s3_checksum,
// is the S3 SHA-256 checksum the store keeps for the object at url: what
// the catalog compares instead of reading the object back.
func AssertS3Checksum(t testing.TB, ctx context.Context, store *blob.Store, url, reported string) {
	t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	oi, err := store.StatChecksum(ctx, bucket, key)
	if err != nil {
		t.Fatalf("stat %s: %v", url, err)
	}
	if reported == "" || oi.S3Checksum != reported {
		t.Fatalf("reported s3_checksum %q, the store keeps %q for %s", reported, oi.S3Checksum, url)
	}
}

// ReadObject is the content of a (small) object, or the store's error:
// for tests that check what a key may read.
func ReadObject(ctx context.Context, store *blob.Store, bucket, key string) (string, error) {
	rc, _, err := store.Get(ctx, bucket, key)
	if err != nil {
		return "", err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	return string(b), err
}

// Open opens the file at path for reading until the test ends and returns
// it with its size.
func Open(t testing.TB, path string) (*os.File, int64) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return f, fi.Size()
}

// Upload stores the file at path as bucket/key in store and returns what
// was stored.
func Upload(t testing.TB, ctx context.Context, store *blob.Store, path, bucket, key string) blob.Info {
	t.Helper()
	info, err := store.PutFile(ctx, bucket, key, path, nil, nil)
	if err != nil {
		t.Fatalf("upload %s: %v", path, err)
	}
	return info
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

// WriteFile writes content to a new file at path, mode 0600, and returns
// path.
func WriteFile(t testing.TB, path, content string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// WriteDisk writes head at the start of a new file at path, makes the
// file size bytes long (what head does not fill is a hole) and returns
// path: a disk image holding what a test needs.
func WriteDisk(t testing.TB, path string, size int64, head io.Reader) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, head); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
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

// ServeFiles serves files (URL path → bytes) on loopback, with ranges
// and Last-Modified (If-Range works), 404 for anything else, until the
// test ends, and returns the server's URL.
func ServeFiles(t testing.TB, files map[string][]byte) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		http.ServeContent(w, r, r.URL.Path, time.Unix(1700000000, 0), bytes.NewReader(data))
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}
