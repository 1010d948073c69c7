package luks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// Format names, as qemu-img spells them.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatISO   = "iso" // stored as is: qemu-img reads it as raw
	FormatLUKS  = "luks"
	FormatVMDK  = "vmdk"
	FormatVDI   = "vdi"
	FormatVHDX  = "vhdx"
	FormatVPC   = "vpc"
)

// Detect names the container format a header shows: qcow2, luks, vmdk,
// vdi, vhdx or vpc; anything else is raw. size is the file's size (a fixed
// VHD is told by its footer).
func Detect(r io.ReaderAt, size int64) (string, error) {
	head := make([]byte, 512)
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	head = head[:n]
	has := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case has(0, "QFI\xfb"):
		return FormatQcow2, nil
	case has(0, "LUKS\xba\xbe"):
		return FormatLUKS, nil
	case has(0, "KDMV"), has(0, "# Disk DescriptorFile"):
		return FormatVMDK, nil
	case has(0, "vhdxfile"):
		return FormatVHDX, nil
	case has(0, "conectix"):
		return FormatVPC, nil
	case len(head) >= 68 && binary.LittleEndian.Uint32(head[64:68]) == 0xbeda107f:
		return FormatVDI, nil
	}
	if size >= 512 {
		foot := make([]byte, 8)
		if _, err := r.ReadAt(foot, size-512); err == nil && string(foot) == "conectix" {
			return FormatVPC, nil
		}
	}
	return FormatRaw, nil
}

// DetectFile is Detect on a file.
func DetectFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	return Detect(f, fi.Size())
}

// CheckSource makes sure the file at path is what declared says (raw, iso
// or qcow2) before qemu-img opens it, and that a qcow2 needs nothing
// outside itself. It returns the format to give qemu-img and the virtual
// size.
func CheckSource(path, declared string) (qemuFormat string, virtualSize int64, err error) {
	name := filepath.Base(path)
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !fi.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%s is not a regular file", name)
	}
	got, err := Detect(f, fi.Size())
	if err != nil {
		return "", 0, fmt.Errorf("read the header of %s: %w", name, err)
	}
	switch declared {
	case FormatRaw, FormatISO:
		if got != FormatRaw {
			return "", 0, fmt.Errorf("%w: declared %s but its header says %s", ErrFormat, declared, got)
		}
		if fi.Size() == 0 {
			return "", 0, fmt.Errorf("%w: %s is empty", ErrFormat, name)
		}
		return FormatRaw, fi.Size(), nil
	case FormatQcow2:
		if got != FormatQcow2 {
			return "", 0, fmt.Errorf("%w: declared qcow2 but its header says %s", ErrFormat, got)
		}
		size, err := checkQcow2(f)
		if err != nil {
			return "", 0, fmt.Errorf("%w: %w", ErrFormat, err)
		}
		return FormatQcow2, size, nil
	case FormatLUKS:
		return "", 0, fmt.Errorf("%w: it is LUKS already: it cannot be encrypted again", ErrFormat)
	}
	return "", 0, fmt.Errorf("%w: format %q: only raw, iso and qcow2 can be encrypted (convert the image to qcow2 first)", ErrFormat, declared)
}

// checkQcow2 refuses a qcow2 that points outside itself (backing file,
// external data file) or is encrypted already, and returns its virtual
// size.
func checkQcow2(f io.ReaderAt) (int64, error) {
	h := make([]byte, 104)
	if n, err := f.ReadAt(h, 0); n < 72 {
		return 0, fmt.Errorf("truncated qcow2 header: %v", err)
	}
	version := binary.BigEndian.Uint32(h[4:8])
	if version != 2 && version != 3 {
		return 0, fmt.Errorf("qcow2 version %d is not 2 or 3", version)
	}
	if binary.BigEndian.Uint64(h[8:16]) != 0 {
		return 0, errors.New("it has a backing file; only self-contained images can be encrypted")
	}
	if binary.BigEndian.Uint32(h[32:36]) != 0 {
		return 0, errors.New("it is encrypted already (qcow2 encryption)")
	}
	if version == 3 && binary.BigEndian.Uint64(h[72:80])&(1<<2) != 0 {
		return 0, errors.New("it keeps its data in an external file")
	}
	size := int64(binary.BigEndian.Uint64(h[24:32]))
	if size <= 0 {
		return 0, fmt.Errorf("virtual size %d", size)
	}
	return size, nil
}
