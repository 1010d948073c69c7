package flatten

import (
	"bytes"
	"os"
)

// holeBlock is the granularity at which a file's zeros become holes: the
// block size of the filesystems the images are made of.
const holeBlock = 4096

var zeroBlock [holeBlock]byte

// sparseWriter writes a file's content from its start, leaving every
// aligned block of zeros as a hole: the filesystem builders keep a file's
// holes (mke2fs turns zero blocks into holes; the native ext4 writer maps
// only the host file's data), so zeros never written are never read
// again, stored in the image or uploaded. A block that one Write does not
// finish waits in pending for the next, so how the content is cut into
// writes does not matter.
type sparseWriter struct {
	f       *os.File
	off     int64 // where the next whole block starts: bytes handled
	pending []byte
	block   [holeBlock]byte
}

// Write adds p to the content.
func (w *sparseWriter) Write(p []byte) (int, error) {
	n := len(p)
	if len(w.pending) > 0 {
		k := copy(w.block[len(w.pending):], p)
		w.pending, p = w.block[:len(w.pending)+k], p[k:]
		if len(w.pending) < holeBlock {
			return n, nil
		}
		if err := w.blocks(w.pending); err != nil {
			return 0, err
		}
		w.pending = nil
	}
	whole := len(p) / holeBlock * holeBlock
	if err := w.blocks(p[:whole]); err != nil {
		return 0, err
	}
	if tail := p[whole:]; len(tail) > 0 {
		w.pending = w.block[:copy(w.block[:], tail)]
	}
	return n, nil
}

// blocks writes whole blocks at w.off, one write per run of data blocks,
// none for the zero ones.
func (w *sparseWriter) blocks(p []byte) error {
	for len(p) > 0 {
		data := 0
		for data < len(p) && !bytes.Equal(p[data:data+holeBlock], zeroBlock[:]) {
			data += holeBlock
		}
		if data > 0 {
			if _, err := w.f.WriteAt(p[:data], w.off); err != nil {
				return err
			}
		}
		zeros := data
		for zeros < len(p) && bytes.Equal(p[zeros:zeros+holeBlock], zeroBlock[:]) {
			zeros += holeBlock
		}
		w.off += int64(zeros)
		p = p[zeros:]
	}
	return nil
}

// finish writes the last, partial block unless it is all zeros, and gives
// the file its full size when the content ends in a hole.
func (w *sparseWriter) finish() error {
	size := w.off + int64(len(w.pending))
	if len(w.pending) > 0 && !bytes.Equal(w.pending, zeroBlock[:len(w.pending)]) {
		if _, err := w.f.WriteAt(w.pending, w.off); err != nil {
			return err
		}
	}
	st, err := w.f.Stat()
	if err != nil {
		return err
	}
	if st.Size() < size {
		return w.f.Truncate(size)
	}
	return nil
}
