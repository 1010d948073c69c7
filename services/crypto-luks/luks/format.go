package luks

import (
	"fmt"
	"path/filepath"

	"github.com/slipway/slipway/pkg/inspect"
)

// Format names, as qemu-img spells them.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatISO   = "iso" // stored as is: qemu-img reads it as raw
	FormatLUKS  = "luks"
)

// Every file crypto-luks hands to qemu-img is read first by Slipway's one
// inspector (pkg/inspect, the converter's): its format, its virtual size,
// and that it needs nothing outside itself (backing files, external data
// files, extents). There is no second, weaker header check here.

// inspectFile is inspect.InspectFile with no virtual size limit of its
// own: the catalog and the converter bound sizes before crypto-luks sees
// an image.
func inspectFile(path string) (inspect.Report, error) {
	rep, err := inspect.InspectFile(path, inspect.Limits{MaxVirtualSize: -1})
	if err != nil {
		return rep, fmt.Errorf("%w: %s: %w", ErrFormat, filepath.Base(path), err)
	}
	return rep, nil
}

// CheckSource makes sure the file at path is what declared says (raw, iso
// or qcow2) before qemu-img opens it, and that it needs nothing outside
// itself. It returns the format to give qemu-img and the virtual size.
func CheckSource(path, declared string) (qemuFormat string, virtualSize int64, err error) {
	rep, err := inspectFile(path)
	if err != nil {
		return "", 0, err
	}
	got := rep.Format
	switch declared {
	case FormatRaw, FormatISO:
		if got != inspect.Raw && got != inspect.ISO {
			return "", 0, fmt.Errorf("%w: declared %s but its header says %s", ErrFormat, declared, got)
		}
		if rep.VirtualSize == 0 {
			return "", 0, fmt.Errorf("%w: %s is empty", ErrFormat, filepath.Base(path))
		}
		return FormatRaw, rep.VirtualSize, nil
	case FormatQcow2:
		if got != inspect.QCOW2 {
			return "", 0, fmt.Errorf("%w: declared qcow2 but its header says %s", ErrFormat, got)
		}
		return FormatQcow2, rep.VirtualSize, nil
	case FormatLUKS:
		return "", 0, fmt.Errorf("%w: it is LUKS already: it cannot be encrypted again", ErrFormat)
	}
	return "", 0, fmt.Errorf("%w: format %q: only raw, iso and qcow2 can be encrypted (convert the image to qcow2 first)", ErrFormat, declared)
}

// isLUKS refuses a file the inspector does not read as a LUKS volume.
func isLUKS(path string) error {
	rep, err := inspectFile(path)
	if err != nil {
		return err
	}
	if rep.Format != inspect.LUKS {
		return fmt.Errorf("%s: %w (it is %s)", filepath.Base(path), ErrNotLUKS, rep.Format)
	}
	return nil
}
