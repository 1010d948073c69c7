package ext4

import (
	"fmt"
	"os"
	"sort"

	"github.com/slipway/slipway/services/builder/tree"
)

// Image is a laid-out ext4 filesystem, read with ReadAt.
type Image struct {
	size   int64
	geo    *geometry
	pieces []piece // sorted, disjoint
	stored map[int64][]byte
	itable []byte // inodes 1 to len/inodeSize, encoded
	super  superFields
	gdt    []byte // every group's descriptor
	used   []int64
	cursor int64 // the allocator's end: blocks below are in use
	files  *fileCache
}

// Range is a run of bytes of the image.
type Range struct{ Off, Len int64 }

// New lays out an ext4 filesystem holding t, whose regular files' bytes
// are the files of the same path under root (opened through root, so
// confined to it). Nothing is copied: ReadAt reads them when asked. The
// files must not change while the image is in use; a file whose size no
// longer matches the tree fails the read.
func New(root *os.Root, t *tree.Tree, opts Options) (*Image, error) {
	l := &layout{opts: opts, root: root}
	steps := []func() error{
		l.checkOptions,
		func() error { return l.addNodes(t) },
		l.identity,
		l.placeGeometry,
		l.placeMetadata,
		func() error { l.placeJournal(); return nil },
		l.placeFiles,
		l.checkSpace,
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return l.image()
}

// checkSpace refuses a layout that ran past the end of the filesystem.
func (l *layout) checkSpace() error {
	if l.alloc.next > l.geo.blocks {
		return &SpaceError{What: "blocks", Need: l.alloc.next, Have: l.geo.blocks}
	}
	return nil
}

// image encodes the inodes, descriptors and superblock fields and lists
// the image's pieces.
func (l *layout) image() (*Image, error) {
	g := l.geo
	im := &Image{size: g.blocks * BlockSize, geo: g, stored: map[int64][]byte{},
		cursor: l.alloc.next, files: newFileCache(l.root, l.files)}
	im.itable = l.encodeInodes()
	im.used = make([]int64, g.groups)
	for i := range l.nodes {
		im.used[int64(i)/g.ipg]++
	}
	for _, s := range l.stored {
		im.stored[s.at] = s.data
	}
	s := &l.super
	s.inodes, s.blocks, s.ipg, s.now, s.label = g.ipg*g.groups, g.blocks, g.ipg, l.opts.Now, l.opts.Label
	s.reserved = g.blocks * 5 / 100
	s.freeInodes = s.inodes - int64(len(l.nodes))
	s.overhead = s.journalBlocks
	for _, m := range g.meta {
		s.overhead += m.count
	}
	im.super = *s
	im.gdt = l.descriptors(im)
	for grp := range g.groups {
		im.super.freeBlocks += int64(le.Uint16(im.gdt[grp*descSize+0x0c:]))
	}
	im.pieces = im.listPieces(l)
	for i := 1; i < len(im.pieces); i++ {
		if a, b := im.pieces[i-1], im.pieces[i]; a.end() > b.start {
			return nil, fmt.Errorf("ext4 layout: %v overlaps %v", a, b) // a bug, never the tree's fault
		}
	}
	return im, nil
}

// encodeInodes encodes every used inode in order, reserved ones as
// mke2fs leaves them: zeros, the bad-blocks inode with its times.
func (l *layout) encodeInodes() []byte {
	b := make([]byte, len(l.nodes)*inodeSize)
	for i, n := range l.nodes {
		ino := uint32(i + 1)
		rec := b[i*inodeSize : (i+1)*inodeSize]
		switch {
		case n != nil:
			n.in.encode(rec)
		case ino == 1:
			in := inode{small: true, atime: l.opts.Now, ctime: l.opts.Now, mtime: l.opts.Now}
			in.encode(rec)
		}
		if l.csum {
			setInodeChecksum(rec, l.seed, ino)
		}
	}
	return b
}

// descriptors encodes the group descriptor table.
func (l *layout) descriptors(im *Image) []byte {
	g := l.geo
	dirs := make([]int64, g.groups)
	for i, n := range l.nodes {
		if n != nil && n.entry.Type == tree.Dir {
			dirs[int64(i)/g.ipg]++
		}
	}
	out := make([]byte, g.gdtBlocks*BlockSize)
	for grp := range g.groups {
		d := groupDesc{
			blockBitmap: g.blockBitmap[grp], inodeBitmap: g.inodeBitmap[grp], inodeTable: g.inodeTable[grp],
			freeBlocks: g.groupEnd(grp) - g.groupStart(grp) - g.usedIn(grp, im.cursor),
			freeInodes: g.ipg - im.used[grp], usedDirs: dirs[grp],
			flags: bgInodeZeroed, itableUnused: g.ipg - im.used[grp],
		}
		if im.used[grp] == 0 {
			d.flags |= bgInodeUninit
		}
		if l.csum {
			d.blockBitmapCsum = crc32c(l.seed, im.blockBitmap(grp))
			d.inodeBitmapCsum = crc32c(l.seed, im.inodeBitmap(grp)[:g.ipg/8])
		}
		d.encode(out[grp*descSize:], grp, l.seed, l.csum)
	}
	return out
}

// pieceKind says where a piece's bytes come from.
type pieceKind uint8

const (
	pieceSuper       pieceKind = iota // a superblock copy and the descriptors
	pieceBlockBitmap                  // generated from the geometry and cursor
	pieceInodeBitmap                  // generated from the inode count
	pieceInodeTable                   // Image.itable
	pieceStored                       // Image.stored
	pieceFile                         // a file under the root
)

// piece is a run of non-zero blocks of the image.
type piece struct {
	span
	kind    pieceKind
	group   int64
	file    int   // pieceFile: index into the file cache
	logical int64 // pieceFile: the file's block at span.start
}

func (p piece) String() string {
	return fmt.Sprintf("piece{kind %d, blocks %d+%d}", p.kind, p.start, p.count)
}

// listPieces lists every run of blocks that is not all zeros.
func (im *Image) listPieces(l *layout) []piece {
	g := im.geo
	var out []piece
	for grp := range g.groups {
		if hasSuper(grp) {
			out = append(out, piece{span: span{g.groupStart(grp), 1 + g.gdtBlocks}, kind: pieceSuper, group: grp})
		}
		lastGroup := grp == g.groups-1
		if g.usedIn(grp, im.cursor) > 0 || (lastGroup && g.blocks%blocksPerGroup != 0) {
			out = append(out, piece{span: span{g.blockBitmap[grp], 1}, kind: pieceBlockBitmap, group: grp})
		}
		// A group without inodes is INODE_UNINIT with checksums on: its
		// inode bitmap is not read, so it can stay zeros.
		if im.used[grp] > 0 || (g.ipg < maxInodesGroup && !im.super.csum) {
			out = append(out, piece{span: span{g.inodeBitmap[grp], 1}, kind: pieceInodeBitmap, group: grp})
		}
		if n := (im.used[grp] + inodesPerBlock - 1) / inodesPerBlock; n > 0 {
			out = append(out, piece{span: span{g.inodeTable[grp], n}, kind: pieceInodeTable, group: grp})
		}
	}
	for at := range im.stored {
		out = append(out, piece{span: span{at, 1}, kind: pieceStored})
	}
	out = append(out, l.data...)
	sort.Slice(out, func(i, j int) bool { return out[i].start < out[j].start })
	return mergeStored(out)
}

// mergeStored joins adjacent stored blocks into one piece.
func mergeStored(ps []piece) []piece {
	out := ps[:0]
	for _, p := range ps {
		if n := len(out); n > 0 && p.kind == pieceStored && out[n-1].kind == pieceStored && out[n-1].end() == p.start {
			out[n-1].count++
			continue
		}
		out = append(out, p)
	}
	return out
}

// blockBitmap generates group grp's block bitmap: its metadata and
// allocated blocks, and the bits past the filesystem's end set.
func (im *Image) blockBitmap(grp int64) []byte {
	g := im.geo
	b := make([]byte, BlockSize)
	base := g.groupStart(grp)
	g.eachUsed(grp, im.cursor, func(s span) { setBits(b, s.start-base, s.end()-base) })
	setBits(b, g.groupEnd(grp)-base, blocksPerGroup)
	return b
}

// inodeBitmap generates group grp's inode bitmap: the used inodes are a
// prefix; the bits past the group's inodes are set.
func (im *Image) inodeBitmap(grp int64) []byte {
	b := make([]byte, BlockSize)
	setBits(b, 0, im.used[grp])
	setBits(b, im.geo.ipg, maxInodesGroup)
	return b
}

// setBits sets bits [from, to) of b.
func setBits(b []byte, from, to int64) {
	for ; from < to && from%8 != 0; from++ {
		b[from/8] |= 1 << (from % 8)
	}
	for ; from+8 <= to; from += 8 {
		b[from/8] = 0xff
	}
	for ; from < to; from++ {
		b[from/8] |= 1 << (from % 8)
	}
}

// Size is the image's size in bytes.
func (im *Image) Size() int64 { return im.size }

// Close closes the files the image has open.
func (im *Image) Close() error { return im.files.close() }
