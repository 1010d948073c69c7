package qemu

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

const (
	qcow2Magic          = 0x514649fb // "QFI\xfb"
	qcow2ExtBackingFmt  = 0xe2792aca
	qcow2MaxBackingName = 1023
)

// qcow2Backing reads the backing file name and format recorded in a qcow2 header (both ""
// when the image has no backing file or no recorded format).
func qcow2Backing(path string) (name, format string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	hdr := make([]byte, 104)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return "", "", fmt.Errorf("%s: not a qcow2 image: %v", path, err)
	}
	be := binary.BigEndian
	if be.Uint32(hdr[0:4]) != qcow2Magic {
		return "", "", fmt.Errorf("%s is not a qcow2 image", path)
	}
	off, size := be.Uint64(hdr[8:16]), be.Uint32(hdr[16:20])
	if off == 0 || size == 0 {
		return "", "", nil
	}
	if size > qcow2MaxBackingName {
		return "", "", fmt.Errorf("%s: backing file name of %d bytes", path, size)
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(off)); err != nil {
		return "", "", fmt.Errorf("%s: backing file name: %w", path, err)
	}
	hdrLen := uint32(72) // version 2
	if be.Uint32(hdr[4:8]) >= 3 {
		hdrLen = be.Uint32(hdr[100:104])
	}
	format, err = qcow2BackingFormat(f, int64(hdrLen), int64(off))
	return string(buf), format, err
}

// qcow2BackingFormat walks the header extensions (between the header and the backing
// file name) for the backing format.
func qcow2BackingFormat(f *os.File, pos, end int64) (string, error) {
	be := binary.BigEndian
	for pos+8 <= end {
		var h [8]byte
		if _, err := f.ReadAt(h[:], pos); err != nil {
			return "", fmt.Errorf("qcow2 header extension: %w", err)
		}
		typ, n := be.Uint32(h[0:4]), int64(be.Uint32(h[4:8]))
		if typ == 0 {
			return "", nil
		}
		if pos+8+n > end {
			return "", fmt.Errorf("qcow2 header extension of %d bytes overruns the header", n)
		}
		if typ == qcow2ExtBackingFmt {
			b := make([]byte, n)
			if _, err := f.ReadAt(b, pos+8); err != nil {
				return "", err
			}
			return string(b), nil
		}
		pos += 8 + (n+7)/8*8
	}
	return "", nil
}
