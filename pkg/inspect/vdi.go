package inspect

import "strconv"

// VirtualBox VDI header v1.1 (little-endian), as read by QEMU's block/vdi.c:
// signature@0x40 version@0x44 imageType@0x4c offsetBmap@0x154
// offsetData@0x158 sectorSize@0x168 diskSize@0x170 blockSize@0x178
// blocksInImage@0x180.
const (
	vdiMagic       = 0xbeda107f
	vdiVersion11   = 0x00010001
	vdiTypeDynamic = 1
	vdiTypeStatic  = 2
	vdiMaxBlocks   = 0x3fffffff
)

func parseVDI(s *src, rep *Report) error {
	h, err := s.read(VDI, "header", 0, sector)
	if err != nil {
		return err
	}
	if v := le.Uint32(h[0x44:]); v != vdiVersion11 {
		return refuse(VDI, ErrUnsupported, "vdi header version %d.%d is not supported (1.1)", v>>16, v&0xffff)
	}
	typ := le.Uint32(h[0x4c:])
	if typ != vdiTypeDynamic && typ != vdiTypeStatic {
		// Undo and differencing images point at a parent image.
		return refuse(VDI, ErrBackingFile, "vdi image type %d is refused: only normal (dynamic or static) images are accepted, differencing images have a parent", typ)
	}
	bmap, data := uint64(le.Uint32(h[0x154:])), uint64(le.Uint32(h[0x158:]))
	diskSize, blockSize, blocks := le.Uint64(h[0x170:]), uint64(le.Uint32(h[0x178:])), uint64(le.Uint32(h[0x180:]))
	if err := s.checkSize(VDI, diskSize); err != nil {
		return err
	}
	if blockSize == 0 || blocks > vdiMaxBlocks || blocks*blockSize < diskSize {
		return refuse(VDI, ErrMalformed, "vdi geometry (%d blocks of %d bytes) does not cover the disk size %s", blocks, blockSize, HumanBytes(diskSize))
	}
	if !endOK(bmap, blocks*4, s.size) || data > uint64(s.size) {
		return refuse(VDI, ErrTruncated, "vdi block map (offset %d, %d entries) or data offset %d lies beyond the end of the file (%d bytes): the file is truncated", bmap, blocks, data, s.size)
	}
	rep.VirtualSize = int64(diskSize)
	rep.Details["image_type"] = map[uint32]string{vdiTypeDynamic: "dynamic", vdiTypeStatic: "static"}[typ]
	rep.Details["block_size"] = strconv.FormatUint(blockSize, 10)
	return nil
}
