package inspect

import (
	"bytes"
	"encoding/hex"
	"strconv"
	"strings"
)

// VHDX layout (little-endian; MS-VHDX, and oslo.utils' VHDXInspector): the
// identifier "vhdxfile" at 0, the region table at 192 KiB ("regi", entry
// count@8, 32-byte entries from 16: GUID, file offset u64, length u32,
// required u32). The metadata region starts with "metadata", entry count@10
// and 32-byte entries from 32: GUID, offset u32 (from the region start),
// length u32.
const (
	vhdxRegionTable   = 192 << 10
	vhdxTableSize     = 64 << 10
	vhdxMaxEntries    = 2047
	vhdxHasParentFlag = 1 << 1
)

var (
	vhdxBATRegion      = guid("2DC27766-F623-4200-9D64-115E9BFD4A08")
	vhdxMetaRegion     = guid("8B7CA206-4790-4B9A-B8FE-575F050F886E")
	vhdxFileParameters = guid("CAA16737-FA36-4D43-B3B6-33F0AA44E76B")
	vhdxVirtualSize    = guid("2FA54224-CD1B-4876-B211-5DBED83BF4B8")
	vhdxParentLocator  = guid("A8D35F2D-B30B-454D-ABF7-D3D84834AB0C")
)

// guid encodes a textual GUID the way Microsoft stores it: the first three
// groups little-endian, the rest as written.
func guid(s string) [16]byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad GUID " + s)
	}
	var g [16]byte
	copy(g[:], b)
	g[0], g[1], g[2], g[3] = b[3], b[2], b[1], b[0]
	g[4], g[5] = b[5], b[4]
	g[6], g[7] = b[7], b[6]
	return g
}

func parseVHDX(s *src, rep *Report) error {
	metaOff, err := vhdxMetadataRegion(s)
	if err != nil {
		return err
	}
	t, err := s.read(VHDX, "metadata table", int64(metaOff), vhdxTableSize)
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(t, []byte("metadata")) {
		return refuse(VHDX, ErrMalformed, "vhdx metadata table lacks its signature")
	}
	n := int(le.Uint16(t[10:]))
	if n > vhdxMaxEntries {
		return refuse(VHDX, ErrMalformed, "vhdx metadata table has %d entries (limit %d)", n, vhdxMaxEntries)
	}
	var size uint64
	var haveSize bool
	for i := range n {
		e := t[32+32*i : 64+32*i]
		var id [16]byte
		copy(id[:], e)
		item := metaOff + uint64(le.Uint32(e[16:]))
		switch id {
		case vhdxParentLocator:
			return refuse(VHDX, ErrBackingFile, "vhdx has a parent locator; differencing disks with parents are not allowed")
		case vhdxFileParameters:
			b, err := s.read(VHDX, "file parameters", int64(item), 8)
			if err != nil {
				return err
			}
			if le.Uint32(b[4:])&vhdxHasParentFlag != 0 {
				return refuse(VHDX, ErrBackingFile, "vhdx is a differencing disk (HasParent); parent disks are not allowed")
			}
			rep.Details["block_size"] = strconv.FormatUint(uint64(le.Uint32(b)), 10)
		case vhdxVirtualSize:
			b, err := s.read(VHDX, "virtual disk size", int64(item), 8)
			if err != nil {
				return err
			}
			size, haveSize = le.Uint64(b), true
		}
	}
	if !haveSize {
		return refuse(VHDX, ErrMalformed, "vhdx metadata has no virtual disk size")
	}
	if err := s.checkSize(VHDX, size); err != nil {
		return err
	}
	rep.VirtualSize = int64(size)
	return nil
}

// vhdxMetadataRegion checks the region table and returns the metadata
// region's offset. Unknown regions marked required are refused, as qemu does.
func vhdxMetadataRegion(s *src) (uint64, error) {
	t, err := s.read(VHDX, "region table", vhdxRegionTable, vhdxTableSize)
	if err != nil {
		return 0, err
	}
	if !bytes.HasPrefix(t, []byte("regi")) {
		return 0, refuse(VHDX, ErrMalformed, "vhdx region table lacks its signature")
	}
	n := int(le.Uint32(t[8:]))
	if n > vhdxMaxEntries {
		return 0, refuse(VHDX, ErrMalformed, "vhdx region table has %d entries (limit %d)", n, vhdxMaxEntries)
	}
	var meta uint64
	for i := range n {
		e := t[16+32*i : 48+32*i]
		var id [16]byte
		copy(id[:], e)
		off, length := le.Uint64(e[16:]), uint64(le.Uint32(e[24:]))
		if !endOK(off, length, s.size) {
			return 0, refuse(VHDX, ErrTruncated, "vhdx region (offset %d, %d bytes) lies beyond the end of the file (%d bytes): the file is truncated", off, length, s.size)
		}
		switch {
		case id == vhdxMetaRegion:
			meta = off
		case id == vhdxBATRegion:
		case le.Uint32(e[28:])&1 != 0:
			return 0, refuse(VHDX, ErrUnknownFeature, "vhdx has an unknown required region")
		}
	}
	if meta == 0 {
		return 0, refuse(VHDX, ErrMalformed, "vhdx has no metadata region")
	}
	return meta, nil
}
