package inspect

import (
	"fmt"
	"strings"
)

// Format is a disk image format, named as qemu-img names it.
type Format string

// The formats Inspect recognises. VHD is "vpc" because that is qemu's name.
const (
	Raw   Format = "raw"
	QCOW2 Format = "qcow2"
	VMDK  Format = "vmdk"
	VDI   Format = "vdi"
	VHD   Format = "vpc"
	VHDX  Format = "vhdx"
	ISO   Format = "iso"
	LUKS  Format = "luks"
	QED   Format = "qed"
)

// Formats lists every Format in a stable order, for messages and help text.
var Formats = []Format{Raw, QCOW2, VMDK, VDI, VHD, VHDX, ISO, LUKS, QED}

// ParseFormat turns user input into a Format. It is case-insensitive and
// accepts "vhd" for VHD (qemu calls it "vpc"). The empty string is an error:
// callers that allow "not declared" check for it before calling.
func ParseFormat(s string) (Format, error) {
	v := strings.ToLower(strings.TrimSpace(s))
	if v == "vhd" {
		return VHD, nil
	}
	for _, f := range Formats {
		if string(f) == v {
			return f, nil
		}
	}
	names := make([]string, 0, len(Formats)+1)
	for _, f := range Formats {
		names = append(names, string(f))
	}
	names = append(names, "vhd (alias of vpc)")
	return "", fmt.Errorf("unknown disk format %q: valid formats are %s", s, strings.Join(names, ", "))
}

// String returns the qemu name of the format.
func (f Format) String() string { return string(f) }

// QemuFormat is the name to pass to qemu-img -f for reading f: an ISO is
// read as raw data.
func (f Format) QemuFormat() string {
	if f == ISO {
		return string(Raw)
	}
	return string(f)
}
