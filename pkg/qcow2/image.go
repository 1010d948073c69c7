package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// Options tune how an image is made of a raw file.
type Options struct {
	// KeepZeroClusters stores every cluster the file system reports as
	// data, even one whose bytes are all zero. It saves the read of the
	// data Open otherwise does to find them, at the price of a larger
	// image (and upload) when the raw file has allocated zeros. It is
	// not honoured for a file without any hole: a file system may report
	// none because it reports no holes at all, and every cluster would
	// be stored.
	KeepZeroClusters bool
}

// Image is a qcow2 image of a raw file, produced on demand: Size is known
// at once, and ReadAt, Reader and WriteTo give its bytes. ReadAt may be
// called concurrently.
type Image struct {
	f       *os.File
	rawSize int64
	l       *layout
}

// Open maps the data of the raw file at path and lays out its qcow2 image.
// Its virtual size is the file's size rounded up to a multiple of 512
// bytes (qemu's unit; the tail reads as zeros). Unless
// opts.KeepZeroClusters, Open reads the data once to leave out the
// clusters that are all zero. Close releases the file.
func Open(ctx context.Context, path string, opts Options) (*Image, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	im, err := open(ctx, f, opts)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("qcow2: %s: %w", path, err)
	}
	return im, nil
}

func open(ctx context.Context, f *os.File, opts Options) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	im := &Image{f: f, rawSize: st.Size()}
	runs, err := im.dataRuns(ctx, opts.KeepZeroClusters)
	if err != nil {
		return nil, err
	}
	im.l, err = newLayout(ceilDiv(im.rawSize, sectorSize)*sectorSize, runs)
	return im, err
}

// Close closes the raw file.
func (im *Image) Close() error { return im.f.Close() }

// Size is the byte size of the image.
func (im *Image) Size() int64 { return im.l.size() }

// VirtualSize is the size of the disk the image holds.
func (im *Image) VirtualSize() int64 { return im.l.virtualSize }

// DataClusters is how many clusters of data the image stores.
func (im *Image) DataClusters() int64 { return im.l.dataCount }

// Reader returns a reader of the whole image from its first byte.
func (im *Image) Reader() io.Reader { return io.NewSectionReader(im, 0, im.Size()) }

// WriteTo writes the whole image to w, through one buffer of a MiB.
func (im *Image) WriteTo(w io.Writer) (int64, error) {
	// Hiding w's ReadFrom keeps the copy on this buffer: os.File's would
	// read through 32 KiB ones.
	return io.CopyBuffer(struct{ io.Writer }{w}, im.Reader(), make([]byte, 1<<20))
}

// ReadAt reads the image's bytes at off into p: io.ReaderAt.
func (im *Image) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("qcow2: negative offset")
	}
	n := 0
	for len(p) > 0 {
		if off >= im.Size() {
			return n, io.EOF
		}
		k, err := im.readSome(p, off)
		n, off, p = n+k, off+int64(k), p[k:]
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readSome reads into p from off, which is inside the image, up to the end
// of one metadata cluster or of one run of data clusters.
func (im *Image) readSome(p []byte, off int64) (int, error) {
	c, within := off/ClusterSize, off%ClusterSize
	if d := c - im.l.dataStart(); d >= 0 {
		r := im.l.runOf(d)
		k := min(int64(len(p)), (r.first+r.n-d)*ClusterSize-within)
		return int(k), im.readRaw(p[:k], (r.guest+d-r.first)*ClusterSize+within)
	}
	if within == 0 && len(p) >= ClusterSize {
		clear(p[:ClusterSize])
		im.l.render(c, p[:ClusterSize])
		return ClusterSize, nil
	}
	b := make([]byte, ClusterSize)
	im.l.render(c, b)
	return copy(p, b[within:]), nil
}

// readRaw reads the raw file at off into p; what lies past its end (the
// last cluster's tail) reads as zeros.
func (im *Image) readRaw(p []byte, off int64) error {
	n := max(0, min(int64(len(p)), im.rawSize-off))
	if _, err := im.f.ReadAt(p[:n], off); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("qcow2: %s is shorter than the %d bytes it had when opened", im.f.Name(), im.rawSize)
		}
		return fmt.Errorf("qcow2: %w", err)
	}
	clear(p[n:])
	return nil
}

// dataRuns maps the raw file's data with SEEK_DATA and SEEK_HOLE, at
// cluster granularity: a cluster any byte of which is data is in a run,
// unless every data byte of it is zero and keepZeros is false or the file
// has no hole.
func (im *Image) dataRuns(ctx context.Context, keepZeros bool) ([]run, error) {
	var runs []run
	var buf []byte // scan's, made when first needed
	for off := int64(0); off < im.rawSize; {
		start, end, err := im.nextData(off)
		if err != nil || start == end {
			return runs, err
		}
		// A file system that reports no hole in the whole file may not
		// report holes at all: trusting it would store every cluster.
		if keepZeros && (start > 0 || end < im.rawSize) {
			g := start / ClusterSize
			runs = addClusters(runs, g, ceilDiv(end, ClusterSize)-g)
		} else {
			if buf == nil {
				buf = make([]byte, scanClusters*ClusterSize)
			}
			if runs, err = im.scan(ctx, runs, start, end, buf); err != nil {
				return nil, err
			}
		}
		off = end
	}
	return runs, nil
}

// nextData returns the first range of data at or after off; start == end
// when there is none.
func (im *Image) nextData(off int64) (start, end int64, err error) {
	start, err = im.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, syscall.ENXIO) {
		return off, off, nil
	}
	if err != nil {
		return 0, 0, err
	}
	end, err = im.f.Seek(start, unix.SEEK_HOLE)
	return start, min(end, im.rawSize), err
}

// scanClusters is how many clusters scan reads at a time.
const scanClusters = 16

// zeroCluster is what an all-zero cluster reads as.
var zeroCluster [ClusterSize]byte

// scan reads the data from start to end and adds to runs the clusters
// where it is not all zero. Only the data is read: the holes around it
// are zeros.
func (im *Image) scan(ctx context.Context, runs []run, start, end int64, buf []byte) ([]run, error) {
	for pos := start; pos < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next := min(end, (pos/ClusterSize+scanClusters)*ClusterSize)
		b := buf[:next-pos]
		if err := im.readRaw(b, pos); err != nil {
			return nil, err
		}
		for len(b) > 0 {
			k := min(int64(len(b)), ClusterSize-pos%ClusterSize) // to the cluster's end
			if !bytes.Equal(b[:k], zeroCluster[:k]) {
				runs = addClusters(runs, pos/ClusterSize, 1)
			}
			b, pos = b[k:], pos+k
		}
	}
	return runs, nil
}
