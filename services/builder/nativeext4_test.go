package builder

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// The gate holds back an upload's last byte until the check says yes: a
// failed check leaves nothing in S3, neither the object nor an incomplete
// upload; a passed one lets it complete.
func TestGateHoldsTheUploadsEnd(t *testing.T) {
	h := newHarness(t)
	data := bytes.Repeat([]byte("slipway "), 3<<20) // 24 MiB: several parts
	bucket := testenv.Images
	for _, tc := range []struct {
		key   string
		check error
	}{{"gate-refused", errors.New("e2fsck: bad inode")}, {"gate-passed", nil}} {
		release := make(chan struct{})
		reached := make(chan struct{})
		allow := func() error {
			close(reached)
			<-release
			return tc.check
		}
		done := make(chan error, 1)
		go func() {
			_, err := h.store.Put(h.ctx, bucket, tc.key, gate(bytes.NewReader(data), int64(len(data)), allow), int64(len(data)))
			done <- err
		}()
		<-reached
		select {
		case err := <-done:
			t.Fatalf("%s: the upload ended (%v) before the check did", tc.key, err)
		default:
		}
		if h.exists(blob.URL(bucket, tc.key)) {
			t.Fatalf("%s: the object exists before the check has ended", tc.key)
		}
		close(release)
		err := <-done
		switch {
		case tc.check != nil && (err == nil || !errors.Is(err, tc.check)):
			t.Fatalf("%s: upload error %v, want the check's", tc.key, err)
		case tc.check == nil && err != nil:
			t.Fatalf("%s: %v", tc.key, err)
		}
		if got := h.exists(blob.URL(bucket, tc.key)); got != (tc.check == nil) {
			t.Fatalf("%s: object exists = %v after a check that returned %v", tc.key, got, tc.check)
		}
		for u := range h.store.Client().ListIncompleteUploads(context.Background(), bucket, tc.key, true) {
			t.Fatalf("%s: an incomplete upload is left: %+v", tc.key, u)
		}
	}
}

// A gate reads through to the end when allowed, whatever the read sizes.
func TestGateReadsEverything(t *testing.T) {
	data := bytes.Repeat([]byte{1, 2, 3}, 100000)
	calls := 0
	r := gate(bytes.NewReader(data), int64(len(data)), func() error { calls++; return nil })
	got, err := io.ReadAll(io.LimitReader(r, 1<<30))
	if err != nil || !bytes.Equal(got, data) || calls != 1 {
		t.Fatalf("read %d bytes, err %v, allow called %d times; want %d bytes, nil, once", len(got), err, calls, len(data))
	}
}
