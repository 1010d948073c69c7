package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// copyPart is the part size the multipart copy tests lower the limit to:
// objects of a few parts stay above S3's 5 MiB minimum part once split
// evenly.
const copyPart = 8 << 20

// wantCopyChecksum is the SHA-256 checksum the store records for a copy
// of data, computed here independently of package blob: a one-request
// copy, the whole object's digest; a multipart copy, none (MinIO
// computes no checksum for a copied part, so the upload can carry none).
func wantCopyChecksum(data []byte, multipart bool) string {
	if multipart {
		return ""
	}
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

// TestCopyServerSide: one CopyObject request up to the limit, a multipart
// copy of several parts above it (the path of a clone of more than
// 5 GiB); either way the content and SHA-256 are the source's, Copy
// returns the checksum the store recorded (the content's SHA-256 for one
// request), the destination is replaced and no multipart upload is left.
func TestCopyServerSide(t *testing.T) {
	ctx := context.Background()
	s, bucket := newStore(t)
	defer blob.SetMaxCopyPart(copyPart)()
	for _, tc := range []struct {
		name  string
		size  int
		parts int // 0: one request
	}{
		{"single request", 3<<20 + 17, 0},
		{"exactly the limit", copyPart, 0},
		{"multipart", 2*copyPart + 5<<20 + 5, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
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
			if tc.parts > 0 && !strings.HasSuffix(info.ETag, fmt.Sprintf("-%d", tc.parts)) || tc.parts == 0 && strings.Contains(info.ETag, "-") {
				t.Fatalf("ETag %q, want a copy in %d parts (0: one request)", info.ETag, tc.parts)
			}
			want := wantCopyChecksum(data, tc.parts > 0)
			if info.S3Checksum != want {
				t.Errorf("the copy's S3 checksum is %q, want %q", info.S3Checksum, want)
			}
			if stored, err := s.StatChecksum(ctx, bucket, "dst/"+tc.name); err != nil || stored.S3Checksum != want {
				t.Errorf("the store recorded checksum %q (%v), want %q", stored.S3Checksum, err, want)
			}
			if raw, _ := base64.StdEncoding.DecodeString(info.S3Checksum); len(raw) > 0 && hex.EncodeToString(raw) != sum(data) {
				t.Errorf("the recorded checksum %s is not the content's SHA-256 %s", info.S3Checksum, sum(data))
			}
			got, n, err := s.SHA256(ctx, bucket, "dst/"+tc.name)
			if err != nil || got != sum(data) || n != int64(len(data)) {
				t.Fatalf("copied content: sha256 %s (%d bytes) err %v, want %s", got, n, err, sum(data))
			}
			assertNoIncomplete(t, s, bucket)
		})
	}
}

// TestMultipartCopySourceChanged: the source is replaced while its
// multipart copy is between parts. The pinned ETag fails the next part;
// the copy fails naming the source, the destination keeps its old
// content and no multipart upload is left.
func TestMultipartCopySourceChanged(t *testing.T) {
	ctx := context.Background()
	defer blob.SetMaxCopyPart(copyPart)()
	proxy, through := shared.Proxy(t)
	s, bucket := newStoreVia(t, through, 0)
	direct, err := blob.New(shared.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	data := randomBytes(3*copyPart, 7)
	if _, err := s.Put(ctx, bucket, "src", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(ctx, bucket, "dst", bytes.NewReader([]byte("old")), 3); err != nil {
		t.Fatal(err)
	}
	isPartCopy := func(r *http.Request) bool { return isPartNumber(2)(r) && r.Header.Get("X-Amz-Copy-Source") != "" }
	proxy.Hold(isPartCopy)
	done := make(chan error, 1)
	go func() {
		_, err := s.Copy(ctx, bucket, "src", bucket, "dst")
		done <- err
	}()
	if !testenv.Eventually(30*time.Second, 10*time.Millisecond, func() bool { n, _ := proxy.InFlight(http.MethodPut); return n > 0 }) {
		t.Fatal("the copy of part 2 never reached the proxy: no multipart copy")
	}
	if _, err := direct.Put(ctx, bucket, "src", bytes.NewReader([]byte("replaced")), 8); err != nil {
		t.Fatal(err)
	}
	proxy.Hold(nil)
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the copy did not end")
	}
	if err == nil || !strings.Contains(err.Error(), "s3://"+bucket+"/src") || !strings.Contains(err.Error(), "the source changed while it was copied") {
		t.Fatalf("a copy whose source changed: %v, want an error naming the source and saying it changed", err)
	}
	t.Logf("refused: %v", err)
	if info, err := s.Stat(ctx, bucket, "dst"); err != nil || info.Size != 3 {
		t.Errorf("the destination after the failed copy: %+v %v, want its old 3 bytes", info, err)
	}
	assertNoIncomplete(t, s, bucket)
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
