package flatten

import (
	"context"
	"fmt"
	"io"
	"runtime/debug"
)

// Read-ahead: a layer's stream is read (decompressed, and verified by
// whatever reader the layer hands out) on a goroutine of its own, into a
// few fixed buffers that the flattener parses and writes out from on its
// goroutine. On two cores a layer then takes as long as the slower of the
// two sides instead of their sum (pkg/oci's reader hashes for the diff_id
// on a third goroutine, so the slower side is not gunzip and SHA-256
// together); memory stays at aheadBuffers × aheadBufferSize whatever the
// layer's size.
const (
	aheadBuffers    = 4
	aheadBufferSize = 256 << 10
)

// chunk is one buffer filled by the reading goroutine.
type chunk struct {
	buf []byte // the whole buffer, given back once read
	n   int    // bytes of buf filled
	// err is what ended the stream after these bytes: io.EOF, the
	// layer reader's error or the meter's.
	err error
	// metered says err is the meter's own (cap, cancellation).
	metered bool
}

// readAhead reads a meter on its own goroutine, aheadBuffers buffers ahead
// of the flattener. Read and cause are for the flattener's goroutine only;
// stop must return before the layer's reader is closed.
type readAhead struct {
	ctx    context.Context
	free   chan []byte
	filled chan chunk
	quit   chan struct{}
	done   chan struct{}
	// panicked is what the reading goroutine panicked with, set before
	// done is closed.
	panicked *readPanic
	cur      chunk // being read: cur.buf[off:cur.n] is unread
	off      int
}

// readPanic is a panic of the reading goroutine (a decompressor's bug met
// by a crafted layer, say), raised again on the flattener's goroutine,
// where a caller's recover sees it as it did before there was a read-ahead.
type readPanic struct {
	value any
	stack []byte
}

func (p *readPanic) Error() string {
	return fmt.Sprintf("%v (reading a layer ahead)\n%s", p.value, p.stack)
}

// startReadAhead starts reading m into bufs, which nothing else may use
// until stop has returned.
func startReadAhead(ctx context.Context, m *meter, bufs [][]byte) *readAhead {
	a := &readAhead{
		ctx:    ctx,
		free:   make(chan []byte, len(bufs)),
		filled: make(chan chunk, len(bufs)),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	for _, b := range bufs {
		a.free <- b
	}
	go a.fill(m)
	return a
}

// fill runs on the reading goroutine until the stream ends or fails, or
// stop is called.
func (a *readAhead) fill(m *meter) {
	defer close(a.done)
	defer func() {
		if r := recover(); r != nil {
			a.panicked = &readPanic{value: r, stack: debug.Stack()}
		}
	}()
	for {
		var buf []byte
		select {
		case buf = <-a.free:
		case <-a.quit:
			return
		}
		n, err := readFull(m, buf)
		select {
		case a.filled <- chunk{buf: buf, n: n, err: err, metered: err != nil && err == m.err}:
		case <-a.quit:
			return
		}
		if err != nil {
			return
		}
	}
}

// readFull fills b from r unless r ends or fails first; unlike
// io.ReadFull it passes io.EOF on as it is.
func readFull(r io.Reader, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		k, err := r.Read(b[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Read hands out the filled buffers' bytes in order, the error that ended
// the stream with the last of them, as the layer's reader did (so a
// diff_id mismatch still fails the entry its last bytes belong to), and
// that error from then on. It stops waiting when ctx is cancelled.
func (a *readAhead) Read(p []byte) (int, error) {
	for a.off == a.cur.n {
		if a.cur.err != nil {
			return 0, a.cur.err
		}
		a.next()
	}
	n := copy(p, a.cur.buf[a.off:a.cur.n])
	a.off += n
	if a.off == a.cur.n {
		return n, a.cur.err
	}
	return n, nil
}

// next gives the read buffer back and waits for the next one.
func (a *readAhead) next() {
	if a.cur.buf != nil {
		a.free <- a.cur.buf // never blocks: free holds every buffer
	}
	a.off = 0
	select {
	case a.cur = <-a.filled:
	case <-a.ctx.Done():
		a.cur = chunk{err: a.ctx.Err(), metered: true}
	case <-a.done:
		// Nothing more will come; a goroutine that ended without a
		// last chunk, which carries the stream's end, panicked.
		select {
		case a.cur = <-a.filled:
		default:
			a.rethrow()
			a.cur = chunk{err: io.ErrUnexpectedEOF}
		}
	}
}

// rethrow raises the reading goroutine's panic, once, after it ended.
func (a *readAhead) rethrow() {
	if p := a.panicked; p != nil {
		a.panicked = nil
		panic(p)
	}
}

// cause prefers the meter's own error, once Read has returned it, to err.
func (a *readAhead) cause(err error) error {
	if a.off == a.cur.n && a.cur.metered {
		return a.cur.err
	}
	return err
}

// stop ends the reading goroutine and waits for it: a Read of the layer's
// reader under way finishes first (the meter stops the next one). It
// raises the goroutine's panic if Read has not.
func (a *readAhead) stop() {
	close(a.quit)
	<-a.done
	a.rethrow()
}
