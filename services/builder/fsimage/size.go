package fsimage

import (
	"path"

	"github.com/slipway/slipway/services/builder/ext4"
	"github.com/slipway/slipway/services/builder/tree"
)

const blockSize = 4096

// xfsMinMiB is the smallest filesystem mkfs.xfs (5.19 and later) makes.
const xfsMinMiB = 300

// sizing is what a tree needs from a filesystem, before the filesystem's own
// overhead, which depends on the image size.
type sizing struct {
	fs string
	// content is the regular files' bytes, each inode once.
	content int64
	// data is the bytes of blocks the tree's entries occupy: file data and
	// block maps, directory blocks, long symlinks, xattr blocks.
	data int64
	// inodes is the number of inodes the tree needs.
	inodes int64
}

func estimate(t *tree.Tree, fs string) sizing {
	s := sizing{fs: fs}
	dirBytes := map[string]int64{}
	for _, e := range t.Entries() {
		if e.Path != "." {
			dirBytes[path.Dir(e.Path)] += int64(8 + (len(path.Base(e.Path))+3)&^3)
		}
		switch e.Type {
		case tree.Hardlink:
			if fs == "xfs" { // an empty stand-in inode while it is built (xfslink.go)
				s.inodes++
			}
			continue
		case tree.Regular:
			s.content += e.Size
			s.data += fileBlocks(e.Size) * blockSize
		case tree.Symlink:
			if len(e.Link) >= 60 {
				s.data += blockSize
			}
		}
		s.inodes++
		s.data += xattrBlocks(e, fs) * blockSize
	}
	for _, n := range dirBytes {
		// Directory blocks are rarely full; an htree or xfs leaf index
		// adds blocks when a directory spans more than one.
		blocks := (n*2 + blockSize - 1) / blockSize
		if blocks > 1 {
			blocks += 1 + blocks/256
		}
		s.data += blocks * blockSize
	}
	s.data += int64(len(dirBytes)) * blockSize // every directory has at least one block
	return s
}

// fileBlocks counts a file's data blocks plus the indirect or extent-index
// blocks that map them (ext2/3 need one per 1024 blocks).
func fileBlocks(size int64) int64 {
	b := (size + blockSize - 1) / blockSize
	if b > 12 {
		b += b/1000 + 2
	}
	return b
}

func xattrBlocks(e *tree.Entry, fs string) int64 {
	var n int64
	for k, v := range e.Xattrs {
		n += int64(len(k) + len(v) + 24)
	}
	if n <= 96 || fs == "xfs" { // fits in the inode (xfs: refused otherwise)
		return 0
	}
	return (n + blockSize - 1) / blockSize
}

// inodeCount is the inode count mke2fs is told (-N): what the tree needs
// plus room, and never fewer than mke2fs's default of one per 16 KiB.
func (s sizing) inodeCount(sizeMiB int64) int64 {
	return max(s.inodes+s.inodes/4+256, sizeMiB*MiB/16384)
}

// overhead is the filesystem's own use of an image of sizeMiB, in bytes.
func (s sizing) overhead(sizeMiB int64) int64 {
	size := sizeMiB * MiB
	if s.fs == "xfs" {
		// 512-byte inodes in chunks of 64, the internal log (64 MiB up to
		// about 128 GiB, then about 1/2048 of the size), AG headers and
		// btree reservations.
		inodes := (s.inodes*5/4 + 64*16) * 512
		return inodes + max(64*MiB, size/1024) + size/50 + 16*MiB
	}
	o := s.inodeCount(sizeMiB)*256 + size/64 + 4*MiB // inode tables, bitmaps, descriptors, reserved GDT
	if s.fs != "ext2" {
		o += journalBytes(size / blockSize)
	}
	return o
}

// journalBytes is the default journal of a filesystem of blocks blocks, in
// bytes: mke2fs's, which package ext4 also gives its filesystems.
func journalBytes(blocks int64) int64 {
	return ext4.JournalBlocks(blocks) * blockSize
}

// fit returns the smallest size in MiB that holds need bytes plus the
// filesystem's overhead at that size. The overhead grows with the size, so
// iterate to a fixed point.
func (s sizing) fit(need int64) int64 {
	size := (need + MiB - 1) / MiB
	for range 64 {
		want := (need + s.overhead(size) + MiB - 1) / MiB
		if want <= size {
			break
		}
		size = want
	}
	if s.fs == "xfs" {
		size = max(size, xfsMinMiB)
	}
	return size
}

func (s sizing) required() int64 { return s.fit(s.data) }

// auto is the size picked when none is asked for: the content plus 25% plus
// 16 MiB of slack, so the guest has room to write.
func (s sizing) auto() int64 { return s.fit(s.data + s.data/4 + 16*MiB) }
