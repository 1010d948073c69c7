package blob

import (
	"context"
	"crypto/sha256"
	"fmt"
	"sync"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/defaults"
)

// partsInFlight is how many part buffers one upload may hold (Config).
func (s *Store) partsInFlight() int {
	return defaults.Positive(s.cfg.PartsInFlight, DefaultPartsInFlight)
}

// part is one part of a multipart upload, from the moment it is read.
type part struct {
	number int
	offset int64  // of its first byte in the stream
	buf    []byte // the buffer it was read into; data is its start
	data   []byte
	hashed chan struct{} // closed once the whole-stream hash has passed it
	// Set by its sender, read after partSender.finish.
	sum  [sha256.Size]byte
	done minio.CompletePart
}

// partSender runs the parts of one multipart upload through three stages
// that overlap: the caller's goroutine reads the stream into part buffers
// (readAll), a goroutine per part hashes and sends it (send), and one
// goroutine feeds the parts in stream order into the whole stream's
// SHA-256 (hashParts). A buffer goes back to the reader once its part is
// both sent and hashed, and there are at most cap(free) of them: that
// bounds both the memory and the parts in flight. The first failure
// cancels the requests in flight and stops the reading.
type partSender struct {
	u      *upload
	id     string          // of the multipart upload
	ctx    context.Context // of the parts' requests
	cancel context.CancelFunc
	free   chan []byte // buffers of parts sent and hashed, for the next ones
	made   int         // buffers taken so far, at most cap(free)
	parts  []*part     // every part read, in order
	total  int64       // bytes read
	toHash chan *part
	hashed chan struct{} // closed when hashParts returns
	wg     sync.WaitGroup

	mu  sync.Mutex
	err error // the first failure
}

func newPartSender(ctx context.Context, u *upload, id string, inFlight int) *partSender {
	ctx, cancel := context.WithCancel(ctx)
	p := &partSender{
		u: u, id: id, ctx: ctx, cancel: cancel,
		free: make(chan []byte, inFlight),
		made: 1, // the first part's buffer, read before the upload started
		// Every part queued here holds a buffer, so sending never blocks.
		toHash: make(chan *part, inFlight),
		hashed: make(chan struct{}),
	}
	go p.hashParts()
	return p
}

// readAll sends the part in first[:n], then reads and sends the rest of
// the stream, part by part, until it ends or something fails.
func (p *partSender) readAll(first []byte, n int) {
	buf, last := first, false
	for number := 1; n > 0; number++ {
		p.start(&part{number: number, offset: p.total, buf: buf, data: buf[:n]})
		p.total += int64(n)
		if last {
			return
		}
		var err error
		if buf, n, last, err = p.readPart(number + 1); err != nil {
			p.fail(err)
			return
		}
	}
	p.free <- buf // the previous part ended exactly at the end of the stream
}

// readPart reads part number into a buffer of its own; n is 0 when the
// stream ended with the previous part. On an error the buffer is given
// back.
func (p *partSender) readPart(number int) (buf []byte, n int, last bool, err error) {
	if buf, err = p.buffer(p.u.partSize(number)); err != nil {
		return nil, 0, false, fmt.Errorf("part %d at offset %d: %w", number, p.total, err)
	}
	n, last, err = p.u.fill(buf, p.total)
	switch {
	case err != nil:
	case n > 0 && number > maxParts:
		err = fmt.Errorf("stream exceeds %d parts (%d bytes read); raise the part size", maxParts, p.total)
	case p.ctx.Err() != nil: // a part failed while this one was read
		err = fmt.Errorf("part %d at offset %d: %w", number, p.total, p.ctx.Err())
	}
	if err != nil {
		p.free <- buf // no request has seen it
		return nil, 0, false, err
	}
	return buf, n, last, nil
}

// buffer returns a buffer of size bytes for the next part: a new one while
// fewer than cap(free) were taken, else one whose part is done, waiting
// for it. It fails only when the upload is failing.
func (p *partSender) buffer(size int) ([]byte, error) {
	var b []byte
	select {
	case b = <-p.free:
	default:
		if p.made < cap(p.free) {
			p.made++
			return p.u.store.buffer(size), nil
		}
		select {
		case b = <-p.free:
		case <-p.ctx.Done():
			return nil, p.ctx.Err()
		}
	}
	if len(b) != size {
		// A stream of unknown size grows its parts.
		p.u.store.release(b)
		b = p.u.store.buffer(size)
	}
	return b, nil
}

// start queues a part for the whole-stream hash and sends it.
func (p *partSender) start(pt *part) {
	p.parts = append(p.parts, pt)
	pt.hashed = make(chan struct{})
	p.toHash <- pt
	p.wg.Add(1)
	go p.send(pt)
}

// send uploads one part, then gives its buffer back once the part is also
// hashed.
func (p *partSender) send(pt *part) {
	defer p.wg.Done()
	cp, err := p.u.putPart(p.ctx, p.id, pt)
	<-pt.hashed
	if err != nil {
		// After a failed request net/http may still be reading the body
		// in the background: this buffer is not reused.
		p.fail(err)
		return
	}
	pt.done = cp
	p.free <- pt.buf
}

// hashParts feeds the parts into the whole stream's SHA-256 in stream
// order, beside their sending.
func (p *partSender) hashParts() {
	defer close(p.hashed)
	for pt := range p.toHash {
		if !p.failed() { // a failed upload needs no digest
			p.u.hash.Write(pt.data)
		}
		close(pt.hashed)
	}
}

// fail records the upload's first failure and cancels the requests in
// flight, whose own errors then say no more than that.
func (p *partSender) fail(err error) {
	p.mu.Lock()
	if p.err == nil {
		p.err = err
	}
	p.mu.Unlock()
	p.cancel()
}

func (p *partSender) failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err != nil
}

// finish waits until every part is sent (or has failed) and hashed, gives
// the buffers of those that went up back to the Store, and returns the
// parts in order and the bytes read, or the first failure.
func (p *partSender) finish() ([]*part, int64, error) {
	close(p.toHash)
	p.wg.Wait()
	<-p.hashed
	p.cancel()
	close(p.free)
	for b := range p.free {
		p.u.store.release(b)
	}
	if p.err != nil {
		return nil, 0, p.err
	}
	return p.parts, p.total, nil
}
