package fetch

import (
	"bytes"
	"errors"
	"os"
	"syscall"

	"github.com/slipway/slipway/pkg/diskspace"
)

// ensureFree fails with a NoSpaceError unless dir has need bytes free.
func ensureFree(dir string, need int64) error {
	free, err := diskspace.Free(dir)
	if err != nil {
		return err
	}
	if free < need {
		return &NoSpaceError{Dir: dir, Need: need, Free: free}
	}
	return nil
}

const (
	// zeroChunk is the granularity at which runs of zeros become holes.
	zeroChunk = 64 << 10
	// spaceCheckEvery is how many bytes land on disk between two free
	// space checks; spaceReserve is what must stay free, so the stream
	// stops with a clear error well before ENOSPC.
	spaceCheckEvery = 64 << 20
	spaceReserve    = 64 << 20
)

// sparseWriter writes to f, leaving holes for zero chunks, and watches the
// free space of dir as it goes.
type sparseWriter struct {
	f         *os.File
	dir       string
	off       int64 // logical size written so far
	sinceLast int64 // bytes physically written since the last space check
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	written := 0
	for len(p) > 0 {
		n := min(len(p), zeroChunk)
		chunk := p[:n]
		if isZero(chunk) {
			if _, err := w.f.Seek(int64(n), 1); err != nil {
				return written, err
			}
		} else {
			if err := w.checkSpace(int64(n)); err != nil {
				return written, err
			}
			if _, err := w.f.Write(chunk); err != nil {
				if errors.Is(err, syscall.ENOSPC) {
					free, _ := diskspace.Free(w.dir)
					return written, &NoSpaceError{Dir: w.dir, Free: free}
				}
				return written, err
			}
		}
		w.off += int64(n)
		written += n
		p = p[n:]
	}
	return written, nil
}

func (w *sparseWriter) checkSpace(n int64) error {
	w.sinceLast += n
	if w.sinceLast < spaceCheckEvery {
		return nil
	}
	w.sinceLast = 0
	return ensureFree(w.dir, spaceReserve)
}

// finish sets the file's size: trailing holes are not written.
func (w *sparseWriter) finish() error { return w.f.Truncate(w.off) }

// reset empties the file for a restart.
func (w *sparseWriter) reset() error {
	if err := w.f.Truncate(0); err != nil {
		return err
	}
	_, err := w.f.Seek(0, 0)
	w.off, w.sinceLast = 0, 0
	return err
}

var zeros [zeroChunk]byte

func isZero(b []byte) bool { return bytes.Equal(b, zeros[:len(b)]) }
