package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
)

// wantS3Checksum is S3's SHA-256 checksum of data put in parts of
// partSize bytes, computed here independently of package blob: the plain
// digest for a single PUT, the digest of the parts' digests and "-N" for a
// multipart upload (which a stream of unknown size filling exactly one
// part also is: Put cannot tell it ended before reading past it).
func wantS3Checksum(data []byte, partSize int, known bool) string {
	if len(data) < partSize || len(data) == partSize && known {
		s := sha256.Sum256(data)
		return base64.StdEncoding.EncodeToString(s[:])
	}
	var sums []byte
	n := 0
	for off := 0; off < len(data); off += partSize {
		s := sha256.Sum256(data[off:min(off+partSize, len(data))])
		sums = append(sums, s[:]...)
		n++
	}
	s := sha256.Sum256(sums)
	return fmt.Sprintf("%s-%d", base64.StdEncoding.EncodeToString(s[:]), n)
}

// TestPutS3Checksum: every Put sends SHA-256 additional checksums, and
// the checksum the store records (returned by Put, and by StatChecksum
// later) is the one the data's parts give.
func TestPutS3Checksum(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	for _, n := range []int{0, 1000, testPart, testPart + 1, 3*testPart + 12345} {
		for _, known := range []bool{true, false} {
			t.Run(fmt.Sprintf("size=%d/known=%v", n, known), func(t *testing.T) {
				data := randomBytes(n, uint64(n)+7)
				key := fmt.Sprintf("ck/%d-%v", n, known)
				size := int64(n)
				if !known {
					size = -1
				}
				info, err := s.Put(ctx, bucket, key, onlyReader{bytes.NewReader(data)}, size)
				if err != nil {
					t.Fatal(err)
				}
				want := wantS3Checksum(data, testPart, known)
				if info.S3Checksum != want {
					t.Errorf("Put's S3Checksum = %q, want %q", info.S3Checksum, want)
				}
				if info.SHA256 != sum(data) {
					t.Errorf("Put's SHA256 = %s, want %s", info.SHA256, sum(data))
				}
				oi, err := s.StatChecksum(ctx, bucket, key)
				if err != nil {
					t.Fatal(err)
				}
				if oi.S3Checksum != want || oi.Size != int64(n) {
					t.Errorf("StatChecksum = %q (%d bytes), want %q (%d bytes)", oi.S3Checksum, oi.Size, want, n)
				}
				if plain, err := s.Stat(ctx, bucket, key); err != nil || plain.S3Checksum != "" {
					t.Errorf("Stat without checksum mode: %q, %v", plain.S3Checksum, err)
				}
			})
		}
	}
}

// TestPutCorruptedPartRefused: a byte flipped in flight in one part's body
// (a proxy between the client and MinIO; length, headers and signature
// untouched) makes MinIO refuse the part, and Put fails naming it, with no
// object and no incomplete upload left.
func TestPutCorruptedPartRefused(t *testing.T) {
	proxy, through := shared.Proxy(t)
	cfg := through.BlobConfig()
	cfg.PartSize = testPart
	s, err := blob.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, bucket := newStore(t)
	ctx := context.Background()
	data := randomBytes(3*testPart+100, 99)
	cases := []struct {
		name  string
		data  []byte
		match func(*http.Request) bool
		want  string
	}{
		{"multipart part 2", data, func(r *http.Request) bool {
			return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2"
		}, "upload part 2"},
		{"single put", data[:1000], func(r *http.Request) bool { return r.Method == http.MethodPut }, "put s3://"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			key := "corrupt/" + strings.ReplaceAll(c.name, " ", "-")
			proxy.Corrupt(c.match)
			defer proxy.Corrupt(nil)
			_, err := s.Put(ctx, bucket, key, bytes.NewReader(c.data), int64(len(c.data)))
			if err == nil {
				t.Fatal("a corrupted upload was accepted")
			}
			var er minio.ErrorResponse
			errors.As(err, &er)
			t.Logf("refused (S3 code %s): %v", er.Code, err)
			if !errors.Is(err, blob.ErrDigestRefused) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not say which request was refused for its digest", err)
			}
			if _, err := s.Stat(ctx, bucket, key); !blob.IsNotFound(err) {
				t.Errorf("object left after a refused upload (stat err %v)", err)
			}
			assertNoIncomplete(t, s, bucket)
		})
	}
	// The same data through the same proxy, untouched, goes in.
	if info, err := s.Put(ctx, bucket, "corrupt/clean", bytes.NewReader(data), int64(len(data))); err != nil || info.SHA256 != sum(data) {
		t.Fatalf("clean upload through the proxy: %v (%s)", err, info.SHA256)
	}
	if proxy.Count(http.MethodPut, "", "") == 0 {
		t.Fatal("the proxy saw no PUT: the test did not go through it")
	}
}
