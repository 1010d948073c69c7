package inspect

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// src reads bounded regions of the input. Every read is checked against the
// file size first, so a header that points past the end is reported as
// truncated instead of being read as zeros or crashing.
type src struct {
	r          io.ReaderAt
	size       int64
	maxVirtual int64 // <= 0: no limit
}

// checkSize refuses a virtual size beyond the limit as soon as a parser
// knows it, before the size can trip any other check.
func (s *src) checkSize(f Format, v uint64) error {
	if (s.maxVirtual > 0 && v > uint64(s.maxVirtual)) || v > 1<<63-1 {
		limit := "the largest representable size"
		if s.maxVirtual > 0 {
			limit = "the limit of " + HumanBytes(uint64(s.maxVirtual))
		}
		return refuse(f, ErrTooLarge, "virtual size %s exceeds %s", HumanBytes(v), limit)
	}
	return nil
}

// maxRead caps any single region Inspect reads, so memory stays bounded
// whatever the header claims.
const maxRead = 2 << 20

// read returns n bytes at off, or a truncation refusal naming what was being
// read when the region lies beyond the end of the file.
func (s *src) read(f Format, what string, off, n int64) ([]byte, error) {
	if n < 0 || n > maxRead {
		return nil, refuse(f, ErrMalformed, "%s %s is %d bytes, more than the %s this check reads", f, what, n, HumanBytes(maxRead))
	}
	if off < 0 || off > s.size || n > s.size-off {
		return nil, refuse(f, ErrTruncated, "%s %s (offset %d, %d bytes) lies beyond the end of the file (%d bytes): the file is truncated or corrupt", f, what, off, n, s.size)
	}
	return s.readAt(off, n)
}

// peek returns up to n bytes at off, fewer when the file ends first; it is
// for signature probes where absence is not an error.
func (s *src) peek(off, n int64) ([]byte, error) {
	if off < 0 || off >= s.size {
		return nil, nil
	}
	n = min(n, s.size-off)
	return s.readAt(off, n)
}

func (s *src) readAt(off, n int64) ([]byte, error) {
	buf := make([]byte, n)
	m, err := s.r.ReadAt(buf, off)
	if m == len(buf) {
		return buf, nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		// The reader ended before the size we were told: the input shrank or
		// the caller passed a wrong size; either way it is not what we checked.
		return nil, fmt.Errorf("read %d bytes at offset %d: input ended after %d bytes", n, off, m)
	}
	return nil, fmt.Errorf("read %d bytes at offset %d: %w", n, off, err)
}

// endOK reports whether [off, off+n) lies within a file of the given size,
// without overflowing.
func endOK(off, n uint64, size int64) bool {
	if size < 0 {
		return false
	}
	if off > uint64(size) {
		return false
	}
	return n <= uint64(size)-off
}

var (
	be = binary.BigEndian
	le = binary.LittleEndian
)
