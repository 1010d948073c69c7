package guestinit

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// ISO9660 layout: the primary volume descriptor is sector 16.
const (
	isoSector    = 2048
	isoPVDOffset = 16 * isoSector
)

// errNotISO says a device holds no ISO9660 filesystem.
var errNotISO = errors.New("not an ISO9660 filesystem")

// ISOLabel returns the volume identifier of the ISO9660 filesystem in r,
// read from the primary volume descriptor at 0x8000.
func ISOLabel(r io.ReaderAt) (string, error) {
	pvd, err := readPVD(r)
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(pvd[40:72]), " \x00"), nil
}

func readPVD(r io.ReaderAt) ([]byte, error) {
	pvd := make([]byte, isoSector)
	if _, err := r.ReadAt(pvd, isoPVDOffset); err != nil {
		return nil, fmt.Errorf("%w: %v", errNotISO, err)
	}
	if pvd[0] != 1 || string(pvd[1:6]) != "CD001" {
		return nil, errNotISO
	}
	return pvd, nil
}

// ReadISORootFile returns a file of the ISO9660 root directory by name (as
// "CONTEXT.SH", matched without case or ";1" version), at most limit bytes.
// It lets the init read a context disk when the kernel has no iso9660 driver
// (Debian builds it as a module, and container images carry no modules).
func ReadISORootFile(r io.ReaderAt, name string, limit int64) ([]byte, error) {
	pvd, err := readPVD(r)
	if err != nil {
		return nil, err
	}
	root := pvd[156 : 156+34]
	extent := int64(binary.LittleEndian.Uint32(root[2:6])) * isoSector
	size := int64(binary.LittleEndian.Uint32(root[10:14]))
	if size > 16<<20 {
		return nil, fmt.Errorf("iso9660: root directory of %d bytes is implausible", size)
	}
	dir := make([]byte, size)
	if _, err := r.ReadAt(dir, extent); err != nil {
		return nil, fmt.Errorf("iso9660: root directory: %w", err)
	}
	for off := 0; off < len(dir); {
		n := int(dir[off])
		if n == 0 { // records do not cross sectors: skip the padding
			off = (off/isoSector + 1) * isoSector
			continue
		}
		if n < 34 || off+n > len(dir) || 33+int(dir[off+32]) > n {
			return nil, fmt.Errorf("iso9660: bad directory record at %d", off)
		}
		rec := dir[off : off+n]
		off += n
		id, _, _ := bytes.Cut(rec[33:33+int(rec[32])], []byte(";"))
		if rec[25]&2 != 0 || !strings.EqualFold(strings.TrimSuffix(string(id), "."), name) {
			continue
		}
		fsize := int64(binary.LittleEndian.Uint32(rec[10:14]))
		if fsize > limit {
			return nil, fmt.Errorf("iso9660: %s is %d bytes, more than %d", name, fsize, limit)
		}
		data := make([]byte, fsize)
		start := int64(binary.LittleEndian.Uint32(rec[2:6])) * isoSector
		if _, err := r.ReadAt(data, start); err != nil {
			return nil, fmt.Errorf("iso9660: %s: %w", name, err)
		}
		return data, nil
	}
	return nil, fmt.Errorf("iso9660: no %s in the root directory", name)
}
