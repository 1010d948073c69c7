package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// resumer reads an origin to its end, reopening it where it broke off.
//
// When the origin can only start over, the resumer sets restart and fails
// the current read with errRestart: everything derived from the bytes so
// far (hash, decompressor, output) must be thrown away, then reading
// continues from byte 0 of the new body.
type resumer struct {
	ctx      context.Context
	origin   origin
	retries  int           // left
	delay    time.Duration // next backoff
	maxDelay time.Duration
	idle     time.Duration

	body    io.ReadCloser
	cancel  context.CancelFunc // of the current body's request
	stalled atomic.Bool        // the idle watchdog fired
	timer   *time.Timer

	offset, total int64
	started       bool // the origin answered once: retries resume a transfer
	restart       bool // pending: the caller must reset and read again
	eof           bool
	err           error // sticky failure, not an EOF
}

var errRestart = errors.New("source restarted from the beginning")

func (r *resumer) Read(p []byte) (int, error) {
	if r.err != nil {
		return 0, r.err
	}
	if r.eof {
		return 0, io.EOF // readers such as bufio read again after an EOF
	}
	if r.restart {
		return 0, errRestart
	}
	for {
		if r.body == nil {
			if err := r.reopen(); err != nil {
				return 0, err
			}
		}
		n, err := r.body.Read(p)
		if n > 0 {
			r.timer.Reset(r.idle)
		}
		r.offset += int64(n)
		if err == nil {
			return n, nil
		}
		if err == io.EOF && (r.total < 0 || r.offset >= r.total) {
			if r.total >= 0 && r.offset > r.total {
				return n, r.fail(fmt.Errorf("%s: got %d bytes, more than the announced %d", r.origin, r.offset, r.total))
			}
			r.closeBody()
			r.eof = true
			return n, io.EOF
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if r.stalled.Load() {
			err = fmt.Errorf("no data for %s: %w", r.idle, err)
		}
		r.closeBody()
		if ctxErr := r.ctx.Err(); ctxErr != nil {
			return n, r.fail(ctxErr)
		}
		if err := r.backoff(fmt.Errorf("%s: read at byte %d: %w", r.origin, r.offset, err)); err != nil {
			return n, err
		}
		if n > 0 {
			return n, nil // hand over what we have; reopen on the next call
		}
	}
}

// reopen opens the origin at the current offset, retrying failures that
// may heal once the transfer has started. A first request that fails ends
// the fetch at once: the command's redelivery retries it, and every
// watcher sees that attempt fail (a hidden loop here kept one delivery
// busy for minutes).
func (r *resumer) reopen() error {
	for {
		ctx, cancel := context.WithCancel(r.ctx)
		body, start, total, err := r.origin.open(ctx, r.offset)
		if err == nil {
			r.started = true
			r.body, r.cancel, r.total = body, cancel, total
			r.stalled.Store(false)
			r.timer = time.AfterFunc(r.idle, func() { r.stalled.Store(true); cancel() })
			if start != r.offset {
				r.offset = start
				r.restart = true
				return errRestart
			}
			return nil
		}
		cancel()
		if ctxErr := r.ctx.Err(); ctxErr != nil {
			return r.fail(ctxErr)
		}
		if IsPermanent(err) || !r.started {
			return r.fail(err)
		}
		if err := r.backoff(err); err != nil {
			return err
		}
	}
}

// backoff spends one retry, waiting a growing delay; it fails for good
// when none are left.
func (r *resumer) backoff(cause error) error {
	if r.retries <= 0 {
		return r.fail(fmt.Errorf("giving up after retries: %w", cause))
	}
	r.retries--
	t := time.NewTimer(r.delay)
	defer t.Stop()
	select {
	case <-r.ctx.Done():
		return r.fail(r.ctx.Err())
	case <-t.C:
	}
	r.delay = min(2*r.delay, r.maxDelay)
	return nil
}

func (r *resumer) fail(err error) error {
	r.err = err
	r.closeBody()
	return err
}

func (r *resumer) closeBody() {
	if r.body == nil {
		return
	}
	r.timer.Stop()
	r.body.Close()
	r.cancel()
	r.body = nil
}

// resume acknowledges a restart: reads continue from byte 0.
func (r *resumer) resume() { r.restart = false }
