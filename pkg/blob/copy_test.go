package blob_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
)

func TestCopyServerSide(t *testing.T) {
	ctx := context.Background()
	s, bucket := newStore(t)
	for _, tc := range []struct {
		name      string
		size      int
		multipart bool
	}{
		{"single request", 3<<20 + 17, false},
		// Over the lowered limit: a multipart copy of three parts.
		{"multipart", 12<<20 + 5, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.multipart {
				defer blob.SetMaxSingleCopy(5 << 20)()
			}
			data := randomBytes(tc.size, uint64(tc.size))
			if _, err := s.Put(ctx, bucket, "src/"+tc.name, bytes.NewReader(data), int64(len(data))); err != nil {
				t.Fatal(err)
			}
			// The destination exists with other content: Copy replaces it.
			if _, err := s.Put(ctx, bucket, "dst/"+tc.name, bytes.NewReader([]byte("old")), 3); err != nil {
				t.Fatal(err)
			}
			info, err := s.Copy(ctx, bucket, "src/"+tc.name, bucket, "dst/"+tc.name)
			if err != nil {
				t.Fatal(err)
			}
			if info.Size != int64(len(data)) {
				t.Fatalf("copy size %d, want %d", info.Size, len(data))
			}
			// A multipart object's ETag ends in -<parts>.
			if strings.Contains(info.ETag, "-") != tc.multipart {
				t.Fatalf("ETag %q: multipart = %v, want %v", info.ETag, !tc.multipart, tc.multipart)
			}
			got, n, err := s.SHA256(ctx, bucket, "dst/"+tc.name)
			if err != nil || got != sum(data) || n != int64(len(data)) {
				t.Fatalf("copied content: sha256 %s (%d bytes) err %v, want %s", got, n, err, sum(data))
			}
			assertNoIncomplete(t, s, bucket)
		})
	}
}

func TestCopyRefusals(t *testing.T) {
	ctx := context.Background()
	s, bucket := newStore(t)
	if _, err := s.Copy(ctx, bucket, "missing", bucket, "dst"); !blob.IsNotFound(err) {
		t.Fatalf("copy of a missing object: %v, want not found", err)
	}
	if _, err := s.Put(ctx, bucket, "a", bytes.NewReader([]byte("x")), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy(ctx, bucket, "a", bucket, "a"); err == nil {
		t.Fatal("copy onto itself succeeded")
	}
	if _, err := s.Stat(ctx, bucket, "dst"); !blob.IsNotFound(err) {
		t.Fatalf("a failed copy left %v", err)
	}
}
