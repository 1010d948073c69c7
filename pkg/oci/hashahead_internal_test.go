package oci

import (
	"bytes"
	"crypto/sha256"
	"math/rand/v2"
	"runtime"
	"testing"
	"time"
)

// TestHashAhead: the sum is SHA-256 of what was written, however the
// writes cut it and wherever they end against the buffers; the goroutine
// starts only with a full buffer and is gone after Sum or stop.
func TestHashAhead(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 3*hashAheadBuffer+17)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	before := runtime.NumGoroutine()
	for _, size := range []int{0, 1, hashAheadBuffer - 1, hashAheadBuffer, hashAheadBuffer + 1, 2 * hashAheadBuffer, len(data)} {
		for _, chunk := range []int{1000, 4096, hashAheadBuffer + 5} {
			a := newHashAhead(sha256.New())
			for p := data[:size]; len(p) > 0; {
				k := min(chunk, len(p))
				a.Write(p[:k])
				p = p[k:]
			}
			if started := a.full != nil; started != (size >= hashAheadBuffer) {
				t.Errorf("%d bytes: goroutine started %v", size, started)
			}
			want := sha256.Sum256(data[:size])
			if got := a.Sum(); !bytes.Equal(got, want[:]) || !bytes.Equal(a.Sum(), want[:]) {
				t.Errorf("%d bytes in writes of %d: sum %x, want %x", size, chunk, got, want)
			}
			a.stop()
		}
	}
	stopped := newHashAhead(sha256.New())
	stopped.Write(data)
	stopped.stop()
	stopped.stop()
	for deadline := time.Now().Add(2 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
	}
}
