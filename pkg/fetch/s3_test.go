package fetch

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

func TestFetchS3(t *testing.T) {
	s3 := testenv.MinIO(t)
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := store.EnsureBucket(ctx, "uploads"); err != nil {
		t.Fatal(err)
	}
	data := randomBytes(t, 5<<20)
	if _, err := store.Put(ctx, "uploads", "a/disk.raw", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	opts := fastOpts()
	opts.Store = store
	opts.Checksums = []string{"sha256:" + sum(data)}
	dst := filepath.Join(t.TempDir(), "out")
	res, err := File(ctx, "s3://uploads/a/disk.raw", dst, opts)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	if res.FetchedBytes != int64(len(data)) || res.SHA256Fetched != sum(data) {
		t.Fatalf("result %+v", res)
	}
	assertFile(t, dst, data)

	// Resuming reads the rest of the object from an offset.
	o, err := newS3Origin("s3://uploads/a/disk.raw", store)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := o.open(ctx, 0); err != nil {
		t.Fatal(err)
	}
	body, start, total, err := o.open(ctx, 1000)
	if err != nil {
		t.Fatal(err)
	}
	defer body.Close()
	var rest bytes.Buffer
	rest.ReadFrom(body)
	if start != 1000 || total != int64(len(data)) || !bytes.Equal(rest.Bytes(), data[1000:]) {
		t.Fatalf("ranged open: start %d total %d, %d bytes", start, total, rest.Len())
	}

	// A missing object is permanent.
	_, err = File(ctx, "s3://uploads/missing", filepath.Join(t.TempDir(), "o"), opts)
	if err == nil || !IsPermanent(err) || !blob.IsNotFound(err) {
		t.Fatalf("missing object: err = %v, want a permanent not-found error", err)
	}
	var ce *ChecksumError
	if errors.As(err, &ce) {
		t.Fatal("a missing object is not a checksum error")
	}
}
