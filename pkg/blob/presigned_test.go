package blob_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// putPart PUTs data to a presigned part URL as a browser does: the signed
// checksum header, nothing else. It returns the status and the ETag.
func putPart(t *testing.T, url string, data []byte, sum string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, url, bytes.NewReader(data))
	if sum != "" {
		req.Header.Set("x-amz-checksum-sha256", sum)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("ETag")
}

func b64sha(data []byte) string {
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

// TestPresignedMultipart: a client with no keys uploads in two presigned
// parts; the server refuses a part whose bytes are not the ones signed
// for, and one sent without the signed checksum; listing shows what it
// holds with each part's SHA-256; completing assembles the object with
// the composite checksum; an aborted upload's parts are gone.
func TestPresignedMultipart(t *testing.T) {
	s, bucket := newStore(t)
	ctx := context.Background()
	data := randomBytes(testPart+1000, 9)
	parts := [][]byte{data[:testPart], data[testPart:]}
	key := "uploads/alice/u/disk.raw"
	id, err := s.StartMultipart(ctx, bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	var done []blob.Part
	for i, p := range parts {
		sum := b64sha(p)
		u, err := s.PresignPart(ctx, bucket, key, id, i+1, sum, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			spoiled := bytes.Clone(p)
			spoiled[len(spoiled)/2] ^= 1
			if code, _ := putPart(t, u.String(), spoiled, sum); code < 400 {
				t.Errorf("part 1 with other bytes than signed for: %d, want a refusal", code)
			}
			if code, _ := putPart(t, u.String(), p, ""); code < 400 {
				t.Errorf("part 1 without the signed checksum header: %d, want a refusal", code)
			}
		}
		code, etag := putPart(t, u.String(), p, sum)
		if code != http.StatusOK || etag == "" {
			t.Fatalf("part %d: %d, ETag %q", i+1, code, etag)
		}
		done = append(done, blob.Part{Number: i + 1, ETag: etag, SHA256: sum})
	}
	listed, err := s.ListParts(ctx, bucket, key, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(listed) != 2 || listed[0].Size != testPart || listed[1].Size != 1000 || listed[0].SHA256 != done[0].SHA256 || listed[1].SHA256 != done[1].SHA256 {
		t.Fatalf("listed parts %+v, want the two sent with their SHA-256s", listed)
	}
	if _, err := s.CompleteMultipart(ctx, bucket, key, id, []blob.Part{done[1]}); err == nil {
		t.Error("completing from part 2 alone was accepted")
	}
	info, err := s.CompleteMultipart(ctx, bucket, key, id, done)
	if err != nil {
		t.Fatal(err)
	}
	raw0, _ := base64.StdEncoding.DecodeString(done[0].SHA256)
	raw1, _ := base64.StdEncoding.DecodeString(done[1].SHA256)
	if want := b64sha(append(raw0, raw1...)) + "-2"; info.Size != int64(len(data)) || info.S3Checksum != want {
		t.Errorf("completed: size %d checksum %q, want %d and %q", info.Size, info.S3Checksum, len(data), want)
	}
	got, err := testenv.ReadObject(ctx, s, bucket, key)
	if err != nil || got != string(data) {
		t.Fatalf("the object is not the bytes sent (%d bytes read, %v)", len(got), err)
	}

	// Another upload, aborted: its parts are gone, and aborting again is
	// no error.
	other := "uploads/bob/v/left.raw"
	stale, err := s.StartMultipart(ctx, bucket, other)
	if err != nil {
		t.Fatal(err)
	}
	u, err := s.PresignPart(ctx, bucket, other, stale, 1, b64sha(parts[1]), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if code, _ := putPart(t, u.String(), parts[1], b64sha(parts[1])); code != http.StatusOK {
		t.Fatalf("bob's part: %d", code)
	}
	if err := s.AbortMultipart(ctx, bucket, other, stale); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ListParts(ctx, bucket, other, stale); !blob.IsNotFound(err) {
		t.Errorf("parts of an aborted upload: %v, want not found", err)
	}
	if err := s.AbortMultipart(ctx, bucket, other, stale); err != nil {
		t.Errorf("aborting again: %v, want nil (already gone)", err)
	}
}

func TestPartSizeFor(t *testing.T) {
	for _, c := range []struct {
		size      int64
		part      int64
		partCount int
	}{
		{0, 16 << 20, 1},
		{1, 16 << 20, 1},
		{16 << 20, 16 << 20, 1},
		{16<<20 + 1, 16 << 20, 2},
		{2 << 30, 16 << 20, 128},
		{200 << 30, 21 << 20, 9753},
		{5 << 40, 525 << 20, 9987},
	} {
		part, n := blob.PartSizeFor(c.size)
		if part != c.part || n != c.partCount || int64(n)*part < c.size || n > 10000 {
			t.Errorf("PartSizeFor(%d) = %d, %d; want %d, %d", c.size, part, n, c.part, c.partCount)
		}
	}
}
