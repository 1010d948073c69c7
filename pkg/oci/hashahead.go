package oci

import "hash"

// hashAheadBuffer is the size of each of hashAhead's two buffers.
const hashAheadBuffer = 256 << 10

// hashAhead hashes what is written to it on a goroutine of its own, a
// buffer behind the writes, so a layer's diff_id hash runs beside its
// decompression instead of after each Read. Write copies into one of two
// buffers; a full one goes to the goroutine, started with the first. Not
// for concurrent use; stop (or Sum) ends the goroutine.
type hashAhead struct {
	h    hash.Hash
	buf  []byte      // being filled
	full chan []byte // to the goroutine; nil when it is not running
	free chan []byte // back from it
	done chan struct{}
	sum  []byte // once Sum has run
}

func newHashAhead(h hash.Hash) *hashAhead {
	return &hashAhead{h: h, buf: make([]byte, 0, hashAheadBuffer)}
}

func (a *hashAhead) Write(p []byte) {
	for len(p) > 0 {
		k := copy(a.buf[len(a.buf):cap(a.buf)], p)
		a.buf, p = a.buf[:len(a.buf)+k], p[k:]
		if len(a.buf) == cap(a.buf) {
			a.handOver()
		}
	}
}

// handOver gives the full buffer to the goroutine, starting it the first
// time, and takes the other one back.
func (a *hashAhead) handOver() {
	if a.full == nil {
		a.full, a.free, a.done = make(chan []byte, 1), make(chan []byte, 1), make(chan struct{})
		a.free <- make([]byte, 0, hashAheadBuffer)
		go a.hash(a.full, a.free, a.done)
	}
	a.full <- a.buf
	a.buf = <-a.free
}

func (a *hashAhead) hash(full <-chan []byte, free chan<- []byte, done chan<- struct{}) {
	defer close(done)
	for b := range full {
		a.h.Write(b)
		free <- b[:0]
	}
}

// Sum returns the hash of everything written; nothing may be written after.
func (a *hashAhead) Sum() []byte {
	if a.sum == nil {
		a.stop()
		a.h.Write(a.buf)
		a.sum = a.h.Sum(nil)
	}
	return a.sum
}

// stop ends the goroutine, if it runs, once it has hashed what it was
// given.
func (a *hashAhead) stop() {
	if a.full != nil {
		close(a.full)
		<-a.done
		a.full = nil
	}
}
