package inspect

import "bytes"

// HeadSize is how much of an image HeadVirtualSize reads.
const HeadSize = 4096

// HeadVirtualSize reads the virtual size an image declares in its first
// bytes, for the formats that declare it there: qcow2, VMDK (sparse
// extent), VDI and a dynamic VHD's leading footer copy. It is a hint for
// capping a download while it streams, not a check: Inspect still reads the
// whole file. ok is false for raw data and for formats that keep the size
// elsewhere.
func HeadVirtualSize(head []byte) (f Format, size uint64, ok bool) {
	switch {
	case len(head) >= 32 && bytes.HasPrefix(head, []byte("QFI\xfb")):
		return QCOW2, be.Uint64(head[24:]), true
	case len(head) >= 20 && bytes.HasPrefix(head, []byte("KDMV")):
		return VMDK, le.Uint64(head[12:]) * sector, true
	case len(head) >= 0x178 && le.Uint32(head[0x40:]) == vdiMagic:
		return VDI, le.Uint64(head[0x170:]), true
	case len(head) >= 56 && bytes.HasPrefix(head, []byte("conectix")):
		return VHD, be.Uint64(head[48:]), true
	}
	return "", 0, false
}
