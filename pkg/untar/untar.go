// Package untar holds what Slipway's confined tar readers share (the
// kernel package reader of kernel-registry, the UEC tarball reader): a
// tar reader that counts its entries against a cap, and the writing of
// one member to a new file of exactly its size. What a reader accepts —
// which names, which types — stays the reader's own.
package untar

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrTooManyEntries: the archive has more entries than the cap.
var ErrTooManyEntries = errors.New("too many entries")

// ErrTruncated: a member's data ended before its header's size.
var ErrTruncated = errors.New("truncated")

// Reader is a tar reader that refuses more than a set number of entries.
type Reader struct {
	tr      *tar.Reader
	max     int
	entries int
}

// NewReader reads the tar stream r, allowing at most maxEntries entries.
func NewReader(r io.Reader, maxEntries int) *Reader {
	return &Reader{tr: tar.NewReader(r), max: maxEntries}
}

// Next is tar.Reader's Next: io.EOF at the end, an error wrapping
// ErrTooManyEntries past the cap.
func (r *Reader) Next() (*tar.Header, error) {
	h, err := r.tr.Next()
	if err != nil {
		return nil, err
	}
	if r.entries++; r.entries > r.max {
		return nil, fmt.Errorf("%w: more than %d", ErrTooManyEntries, r.max)
	}
	return h, nil
}

// Read reads the current entry's data.
func (r *Reader) Read(p []byte) (int, error) { return r.tr.Read(p) }

// WriteFile writes exactly size bytes of r to a new file at path (an
// existing file is never opened: O_EXCL) with perm, and returns how many
// it wrote. Data that ends early, or fails to read, is an error wrapping
// ErrTruncated; a failure to write is the file system's error. The file is
// left in place either way: the caller removes what it gives up on.
func WriteFile(path string, r io.Reader, size int64, perm os.FileMode) (int64, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	var pe *os.PathError
	switch {
	case err != nil && errors.As(err, &pe):
		return n, err
	case err != nil:
		return n, fmt.Errorf("%w (%d of %d bytes): %v", ErrTruncated, n, size, err)
	case n != size:
		return n, fmt.Errorf("%w (%d of %d bytes)", ErrTruncated, n, size)
	}
	return n, nil
}
