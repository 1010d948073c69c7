package ext4

import "fmt"

// Directory entry file types (filetype feature).
const (
	ftReg   = 1
	ftDir   = 2
	ftChar  = 3
	ftBlock = 4
	ftFIFO  = 5
	ftLink  = 7
)

// dirTailSize is the fake entry holding a directory block's checksum
// (metadata_csum) at the block's end.
const dirTailSize = 12

// dirent is one name in a directory.
type dirent struct {
	name  string
	ino   uint32
	ftype uint8
}

// checkName refuses what a directory entry cannot hold, whatever the
// tree's own checks said: empty, ".", "..", longer than 255 bytes, a
// slash or a NUL.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q is not a file name", name)
	case len(name) > 255:
		return fmt.Errorf("name %.40q… is %d bytes, longer than 255", name, len(name))
	}
	for i := 0; i < len(name); i++ {
		if name[i] == '/' || name[i] == 0 {
			return fmt.Errorf("name %q holds %q", name, name[i])
		}
	}
	return nil
}

func direntSize(nameLen int) int { return 8 + (nameLen+3)&^3 }

// dirBlocks packs entries ("." and ".." first) into linear directory
// blocks, at least minBlocks of them, with room for a checksum tail when
// csum is set (the tails are filled in by sealDirBlock).
func dirBlocks(entries []dirent, minBlocks int, csum bool) [][]byte {
	usable := BlockSize
	if csum {
		usable -= dirTailSize
	}
	var blocks [][]byte
	var cur []byte
	off, last := 0, -1 // write offset, offset of the block's last entry
	closeBlock := func() {
		if last >= 0 {
			le.PutUint16(cur[last+4:], uint16(usable-last))
		} else {
			le.PutUint16(cur[4:], uint16(usable)) // an empty block: one unused entry
		}
		blocks = append(blocks, cur)
		cur, off, last = nil, 0, -1
	}
	for _, e := range entries {
		size := direntSize(len(e.name))
		if cur != nil && off+size > usable {
			closeBlock()
		}
		if cur == nil {
			cur = make([]byte, BlockSize)
		}
		le.PutUint32(cur[off:], e.ino)
		le.PutUint16(cur[off+4:], uint16(size))
		cur[off+6] = byte(len(e.name))
		cur[off+7] = e.ftype
		copy(cur[off+8:], e.name)
		last, off = off, off+size
	}
	closeBlock()
	for len(blocks) < minBlocks {
		cur = make([]byte, BlockSize)
		closeBlock()
	}
	return blocks
}

// sealDirBlock writes a directory block's checksum tail (metadata_csum).
func sealDirBlock(b []byte, seed uint32) {
	t := b[BlockSize-dirTailSize:]
	le.PutUint32(t[0:], 0)
	le.PutUint16(t[4:], dirTailSize)
	t[6], t[7] = 0, 0xde
	le.PutUint32(t[8:], crc32c(seed, b[:BlockSize-dirTailSize]))
}
