package qcow2

import (
	"fmt"
	"io"
)

// Range is a range of a disk's bytes: Len bytes from offset Off.
type Range struct{ Off, Len int64 }

// Disk is what an image is made of: a disk of Size bytes whose bytes
// outside its DataRanges are all zero.
type Disk interface {
	// ReadAt reads the disk's bytes, zeros outside the data ranges
	// included. An Image calls it concurrently when its own ReadAt is.
	io.ReaderAt
	// Size is the disk's size in bytes. An Image asks once, when it is
	// laid out.
	Size() int64
	// DataRanges are where the disk may hold bytes that are not zero:
	// sorted by offset, not overlapping, within Size. An Image asks
	// once, when it is laid out.
	DataRanges() []Range
}

// checkRanges refuses a disk's size and data ranges unless the size fits
// an image and the ranges are sorted, not empty, not overlapping and
// within it: a Disk that breaks its contract gets an error, not an image
// of something else.
func checkRanges(size int64, ranges []Range) error {
	if size < 0 || size > MaxVirtualSize {
		return fmt.Errorf("the disk's size %d is out of range (0 to %d bytes)", size, int64(MaxVirtualSize))
	}
	end := int64(0) // of the range before
	for i, r := range ranges {
		switch {
		case r.Len <= 0:
			return fmt.Errorf("the disk's data range %d (%d bytes at %d) is empty", i, r.Len, r.Off)
		case r.Off < end:
			return fmt.Errorf("the disk's data range %d (%d bytes at %d) starts before the end of the one before it (%d): the ranges must be sorted and not overlap", i, r.Len, r.Off, end)
		case r.Off > size || r.Len > size-r.Off: // Off+Len might overflow
			return fmt.Errorf("the disk's data range %d (%d bytes at %d) ends past its size (%d bytes)", i, r.Len, r.Off, size)
		}
		end = r.Off + r.Len
	}
	return nil
}
