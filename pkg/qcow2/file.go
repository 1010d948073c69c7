package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// fileDisk is a raw file as a Disk. Its data ranges are what the file
// system reports (SEEK_DATA, SEEK_HOLE), mapped when it is opened.
type fileDisk struct {
	f      *os.File
	size   int64
	ranges []Range
}

// openFile maps the data of f, which must be a regular file.
func openFile(f *os.File) (*fileDisk, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, errors.New("not a regular file")
	}
	d := &fileDisk{f: f, size: st.Size()}
	for off := int64(0); off < d.size; {
		start, end, err := d.nextData(off)
		if err != nil || start == end {
			return d, err
		}
		d.ranges = append(d.ranges, Range{start, end - start})
		off = end
	}
	return d, nil
}

// nextData returns the first range of data at or after off; start == end
// when there is none.
func (d *fileDisk) nextData(off int64) (start, end int64, err error) {
	start, err = d.f.Seek(off, unix.SEEK_DATA)
	if errors.Is(err, syscall.ENXIO) || err == nil && start >= d.size { // past the size Stat saw: the file grew
		return off, off, nil
	}
	if err != nil {
		return 0, 0, err
	}
	end, err = d.f.Seek(start, unix.SEEK_HOLE)
	return start, min(end, d.size), err
}

// hasHole says whether the file system reported a hole anywhere in the
// file.
func (d *fileDisk) hasHole() bool {
	return len(d.ranges) != 1 || d.ranges[0] != Range{0, d.size}
}

func (d *fileDisk) Size() int64 { return d.size }

func (d *fileDisk) DataRanges() []Range { return d.ranges }

// ReadAt reads the file; a file cut short under its image is an error
// that says so.
func (d *fileDisk) ReadAt(p []byte, off int64) (int, error) {
	n, err := d.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) && off+int64(len(p)) <= d.size {
		return n, fmt.Errorf("%s is shorter than the %d bytes it had when opened", d.f.Name(), d.size)
	}
	return n, err
}
