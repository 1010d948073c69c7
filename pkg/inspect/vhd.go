package inspect

import (
	"bytes"
	"unicode/utf16"
)

// VHD ("vpc") footer, big-endian: cookie "conectix"@0 dataOffset@16
// creatorApp@28 currentSize@48 geometry@56 diskType@60. A fixed disk has the
// footer only at the end; dynamic and differencing disks also copy it to
// offset 0 and keep a "cxsparse" dynamic header at dataOffset with the block
// allocation table offset@16, max entries@28, block size@32 and the parent's
// UTF-16 name@64 (QEMU's block/vpc.c).
const (
	vhdFixed   = 2
	vhdDynamic = 3
	vhdDiff    = 4
)

func parseVHD(s *src, rep *Report) error {
	foot, err := vhdFooter(s)
	if err != nil {
		return err
	}
	size := be.Uint64(foot[48:])
	if err := s.checkSize(VHD, size); err != nil {
		return err
	}
	typ := be.Uint32(foot[60:])
	switch typ {
	case vhdFixed:
		if !endOK(0, size+vhdFooterLen, s.size) {
			return refuse(VHD, ErrTruncated, "vhd fixed disk of %s needs %d bytes but the file has %d: the file is truncated", HumanBytes(size), size+vhdFooterLen, s.size)
		}
		rep.Details["subformat"] = "fixed"
	case vhdDynamic, vhdDiff:
		if err := vhdDynamicHeader(s, be.Uint64(foot[16:]), typ); err != nil {
			return err
		}
		rep.Details["subformat"] = "dynamic"
	default:
		return refuse(VHD, ErrUnsupported, "vhd disk type %d is not supported", typ)
	}
	rep.VirtualSize = int64(size)
	rep.Details["creator"] = string(bytes.TrimRight(foot[28:32], " \x00"))
	return nil
}

// vhdFooter returns the footer qemu uses: the copy at offset 0 when present,
// else the one in the last sector.
func vhdFooter(s *src) ([]byte, error) {
	f, err := s.read(VHD, "footer", 0, min(vhdFooterLen, s.size))
	if err != nil {
		return nil, err
	}
	if len(f) == vhdFooterLen && bytes.HasPrefix(f, []byte("conectix")) {
		return f, nil
	}
	if s.size < vhdFooterLen {
		return nil, refuse(VHD, ErrTruncated, "vhd footer is incomplete: the file is truncated")
	}
	return s.read(VHD, "footer", s.size-vhdFooterLen, vhdFooterLen)
}

func vhdDynamicHeader(s *src, off uint64, typ uint32) error {
	if !endOK(off, 1024, s.size) {
		return refuse(VHD, ErrTruncated, "vhd dynamic header (offset %d) lies beyond the end of the file (%d bytes): the file is truncated", off, s.size)
	}
	d, err := s.read(VHD, "dynamic header", int64(off), 1024)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(d, []byte("cxsparse")) {
		return refuse(VHD, ErrMalformed, "vhd dynamic header at offset %d lacks its \"cxsparse\" cookie", off)
	}
	if typ == vhdDiff {
		return refuse(VHD, ErrBackingFile, "vhd differencing disk references a parent %q; parent disks are not allowed", utf16BE(d[64:576]))
	}
	bat, entries := be.Uint64(d[16:]), uint64(be.Uint32(d[28:]))
	if !endOK(bat, entries*4, s.size) {
		return refuse(VHD, ErrTruncated, "vhd block allocation table (offset %d, %d entries) lies beyond the end of the file (%d bytes): the file is truncated", bat, entries, s.size)
	}
	return nil
}

func utf16BE(b []byte) string {
	u := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		c := be.Uint16(b[i:])
		if c == 0 {
			break
		}
		u = append(u, c)
	}
	return clip(string(utf16.Decode(u)))
}
