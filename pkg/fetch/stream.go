package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
)

// Stream is an open source read as it arrives: decompressed, capped and
// hashed on the way, reopened where a dropped connection broke off. It
// never touches the disk. At the end of the data, Read returns a
// *ChecksumError instead of io.EOF when a digest differs, so a consumer
// that reads to the end cannot take tampered bytes for good ones; a
// consumer that stops early (a tar reader stops at its end-of-archive
// blocks) calls Verify.
type Stream struct {
	p      *pipeline
	cancel context.CancelFunc // of every request: Close unblocks a reader
	src    string
	want   []Checksum
	err    error // sticky: io.EOF at a good end, else the failure that ended it
	sums   map[string]string
}

// Open starts fetching src (as File does) and returns the stream of its
// decompressed bytes. The first request is made here: a refused address,
// a missing object or an unreadable compressed header fails Open.
//
// A stream cannot start over: when the origin can only resume from byte 0
// (a server that ignores Range, or a file that changed), Read fails with
// a retryable error; the consumer begins again with a new Open.
func Open(ctx context.Context, src string, opts Options) (*Stream, error) {
	opts = opts.withDefaults()
	want, err := ParseChecksums(opts.Checksums...)
	if err != nil {
		return nil, err
	}
	o, err := newOrigin(src, opts)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	r := newResumer(ctx, o, opts)
	p, err := newPipeline(r, opts, want)
	if err != nil {
		r.closeBody()
		cancel()
		return nil, streamError(r, err)
	}
	return &Stream{p: p, cancel: cancel, src: o.String(), want: want}, nil
}

// errCannotResume is returned by Read when the origin restarted.
var errCannotResume = errors.New("the source could only be read again from the start, which a stream cannot do")

// streamError turns a restart into errCannotResume.
func streamError(r *resumer, err error) error {
	if errors.Is(err, errRestart) || r.restart {
		return fmt.Errorf("%s: %w", r.origin, errCannotResume)
	}
	return err
}

// Compression names the compression detected: None, Gzip, Bzip2, XZ or
// Zstd.
func (s *Stream) Compression() string { return s.p.comp }

// FetchedBytes is how many bytes were fetched so far.
func (s *Stream) FetchedBytes() int64 { return s.p.in.n }

// Sums are the hex digests of the fetched bytes by algorithm, once the
// stream has ended (nil before).
func (s *Stream) Sums() map[string]string { return s.sums }

// Read reads decompressed bytes; see Stream for what its end means.
func (s *Stream) Read(b []byte) (int, error) {
	if s.err != nil {
		return 0, s.err
	}
	n, err := s.p.out.Read(b)
	if err == nil {
		return n, nil
	}
	if err != io.EOF {
		s.err = streamError(s.p.r, s.p.blame(s.p.r.explain(copyError(s.p.r.origin, s.p.comp, err))))
		return n, s.err
	}
	s.err = s.finish()
	if s.err == nil {
		s.err = io.EOF
	}
	return n, s.err
}

// finish hashes what trails the compressed data and checks the digests.
func (s *Stream) finish() error {
	sums, err := s.p.drain()
	if err != nil {
		return streamError(s.p.r, err)
	}
	s.sums = sums
	return verify(s.src, s.want, sums)
}

// Verify reads what the consumer left of the stream (decompressed, still
// capped) and reports whether every expected digest matched: nil only when
// the whole source was fetched and hashed and no checksum differs.
func (s *Stream) Verify() error {
	if s.err == nil { // not ended yet: set at the end of the data, or by a failure
		if _, err := io.Copy(io.Discard, s); err != nil {
			return err
		}
	}
	if s.err == io.EOF {
		return nil
	}
	return s.err
}

// Close abandons the stream and its connection.
func (s *Stream) Close() error {
	s.cancel() // first: a decompressor's reader may be waiting on the network
	err := s.p.dec.Close()
	s.p.r.closeBody()
	if s.err == nil {
		s.err = errClosed
	}
	return err
}

// Err is the failure that ended the stream: a network failure after its
// retries, a cap, corrupt compressed data, a checksum mismatch, a restart
// it could not follow. nil while it reads well, at its good end, and after
// Close.
func (s *Stream) Err() error {
	if s.err == io.EOF || s.err == errClosed {
		return nil
	}
	return s.err
}

// errClosed is the stream's state after Close.
var errClosed = errors.New("stream closed")
