package qcow2

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
)

// Options tune how an image is made of a disk.
type Options struct {
	// KeepZeroClusters stores every cluster a data range touches, even
	// one whose bytes are all zero. It saves reading the data ranges to
	// find those clusters, at the price of a larger image (and upload)
	// when the ranges hold zeros: a raw file's allocated zeros, which
	// mkfs leaves. Open does not honour it for a file without any hole:
	// a file system may report none because it reports no holes at all,
	// and every cluster would be stored.
	KeepZeroClusters bool
}

// Image is a qcow2 image of a disk, produced on demand: Size is known at
// once, and ReadAt, Reader and WriteTo give its bytes, reading the data
// clusters from the disk. ReadAt may be called concurrently.
type Image struct {
	d        Disk
	diskSize int64     // d.Size() when the image was laid out
	file     io.Closer // Open's raw file; nil for FromDisk's
	l        *layout
}

// Open maps the data of the raw file at path and lays out its qcow2 image:
// FromDisk of the file, whose data ranges are what the file system
// reports. Close releases the file.
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
	d, err := openFile(f)
	if err != nil {
		return nil, err
	}
	im, err := fromDisk(ctx, d, opts.KeepZeroClusters && d.hasHole())
	if err != nil {
		return nil, err
	}
	im.file = f
	return im, nil
}

// FromDisk lays out the qcow2 image of d. Its virtual size is d.Size()
// rounded up to a multiple of 512 bytes (qemu's unit; the tail reads as
// zeros). A cluster any data range touches is stored, whole, as d.ReadAt
// reads it. Unless opts.KeepZeroClusters, FromDisk reads the data ranges
// once to leave out the clusters that are all zero. d must not change
// while the image is read; Close leaves it alone.
func FromDisk(ctx context.Context, d Disk, opts Options) (*Image, error) {
	im, err := fromDisk(ctx, d, opts.KeepZeroClusters)
	if err != nil {
		return nil, fmt.Errorf("qcow2: %w", err)
	}
	return im, nil
}

func fromDisk(ctx context.Context, d Disk, keepZeros bool) (*Image, error) {
	im := &Image{d: d, diskSize: d.Size()}
	ranges := d.DataRanges()
	if err := checkRanges(im.diskSize, ranges); err != nil {
		return nil, err
	}
	runs, err := im.dataRuns(ctx, ranges, keepZeros)
	if err != nil {
		return nil, err
	}
	im.l, err = newLayout(ceilDiv(im.diskSize, sectorSize)*sectorSize, runs)
	return im, err
}

// Close closes the raw file of an image Open made; it does nothing for
// one FromDisk made.
func (im *Image) Close() error {
	if im.file == nil {
		return nil
	}
	return im.file.Close()
}

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
			return n, fmt.Errorf("qcow2: %w", err)
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
		return int(k), im.readDisk(p[:k], (r.guest+d-r.first)*ClusterSize+within)
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

// readDisk reads the disk at off into p; what lies past its end (the last
// cluster's tail) reads as zeros. A read short of the disk's size is an
// error, never zeros.
func (im *Image) readDisk(p []byte, off int64) error {
	n := max(0, min(int64(len(p)), im.diskSize-off))
	k, err := im.d.ReadAt(p[:n], off)
	if int64(k) == n && (err == nil || errors.Is(err, io.EOF)) { // a ReaderAt may say EOF at its end
		clear(p[n:])
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("the disk read %d of %d bytes at %d: %w", k, n, off, err)
}

// dataRuns maps the disk's data ranges to clusters: a cluster a range
// touches is in a run, unless keepZeros is false and every byte of the
// ranges in it is zero.
func (im *Image) dataRuns(ctx context.Context, ranges []Range, keepZeros bool) ([]run, error) {
	var runs []run
	var buf []byte // scan's, made when first needed
	for _, r := range ranges {
		start, end := r.Off, r.Off+r.Len
		if keepZeros {
			g := start / ClusterSize
			runs = addClusters(runs, g, ceilDiv(end, ClusterSize)-g)
			continue
		}
		if buf == nil {
			buf = make([]byte, scanClusters*ClusterSize)
		}
		var err error
		if runs, err = im.scan(ctx, runs, skipStored(runs, start, end), end, buf); err != nil {
			return nil, err
		}
	}
	return runs, nil
}

// skipStored returns start, or the end of its cluster (at most end) when
// runs already store that cluster: the data of a range that shares it
// with the one before need not be read.
func skipStored(runs []run, start, end int64) int64 {
	if k := len(runs) - 1; k >= 0 && runs[k].guest+runs[k].n > start/ClusterSize {
		return min(end, (start/ClusterSize+1)*ClusterSize)
	}
	return start
}

// scanClusters is how many clusters scan reads at a time.
const scanClusters = 16

// zeroCluster is what an all-zero cluster reads as.
var zeroCluster [ClusterSize]byte

// scan reads the data from start to end and adds to runs the clusters
// where it is not all zero. Only the data is read: what lies around it
// is zeros.
func (im *Image) scan(ctx context.Context, runs []run, start, end int64, buf []byte) ([]run, error) {
	for pos := start; pos < end; {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		next := min(end, (pos/ClusterSize+scanClusters)*ClusterSize)
		b := buf[:next-pos]
		if err := im.readDisk(b, pos); err != nil {
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
