package ext4

import (
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"os"
	"path"
	"sort"

	"github.com/slipway/slipway/services/builder/tree"
)

// Options says how to lay out the filesystem.
type Options struct {
	// SizeBytes is the filesystem size, a multiple of BlockSize. A last
	// group too small for its own metadata is left out (Image.Size is
	// then smaller).
	SizeBytes int64
	// Inodes is the number of inodes wanted; rounded up to fill the
	// groups' inode tables, and never fewer than the tree needs.
	Inodes int64
	// Label is the volume name, at most 16 bytes.
	Label string
	// UUID is the filesystem UUID; zero picks a random one. The directory
	// hash seed is random too, or derived from a given UUID so that the
	// same tree and options make the same image.
	UUID [16]byte
	// Now is the time, in Unix seconds, of the filesystem's creation and
	// of every inode's ctime.
	Now int64
	// NoChecksums leaves metadata_csum off.
	NoChecksums bool
}

// node is one inode of the tree being laid out.
type node struct {
	entry    *tree.Entry
	ino      uint32
	links    int
	children []dirent // directories
	subdirs  int
	xattrs   []xattr
	in       inode
	file     int // regular files: index into layout.files
}

// layout is the state of New.
type layout struct {
	opts   Options
	root   *os.Root
	nodes  []*node // by inode number - 1; nil for unused reserved inodes
	byPath map[string]*node
	geo    *geometry
	alloc  *allocator
	stored []storedBlock
	files  []fileRef
	data   []piece // file data
	csum   bool
	seed   uint32
	super  superFields
}

func (l *layout) checkOptions() error {
	o := l.opts
	switch {
	case o.SizeBytes <= 0 || o.SizeBytes%BlockSize != 0:
		return fmt.Errorf("size %d is not a positive multiple of %d", o.SizeBytes, BlockSize)
	case o.SizeBytes/BlockSize > 1<<32-1:
		return fmt.Errorf("size %d is more than 2^32 blocks (no 64bit feature)", o.SizeBytes)
	case len(o.Label) > 16:
		return fmt.Errorf("label %q is longer than 16 bytes", o.Label)
	case o.Now < 0 || o.Now >= 1<<40:
		return fmt.Errorf("time %d is not a creation time", o.Now)
	}
	return nil
}

// addNodes gives every entry of t but hard links an inode, in tree order,
// and lists it in its parent directory.
func (l *layout) addNodes(t *tree.Tree) error {
	l.nodes = make([]*node, firstIno)
	root, ok := t.Get(".")
	if !ok || root.Type != tree.Dir {
		return fmt.Errorf("the tree has no root directory")
	}
	l.nodes[rootIno-1] = &node{entry: root, ino: rootIno}
	lf, ok := t.Get("lost+found")
	switch {
	case !ok:
		lf = &tree.Entry{Path: "lost+found", Type: tree.Dir, Mode: 0o700, ModTime: l.opts.Now}
	case lf.Type != tree.Dir:
		return fmt.Errorf("/lost+found is a %s in the tree: ext4 needs it to be a directory", lf.Type)
	}
	l.nodes[lostFoundIno-1] = &node{entry: lf, ino: lostFoundIno}
	l.byPath = map[string]*node{".": l.nodes[rootIno-1], "lost+found": l.nodes[lostFoundIno-1]}
	if err := l.link(l.nodes[lostFoundIno-1], "lost+found"); err != nil {
		return err
	}
	var hardlinks []*tree.Entry
	for _, e := range t.Entries() {
		switch {
		case e.Path == "." || e.Path == "lost+found":
			continue
		case e.Type == tree.Hardlink:
			hardlinks = append(hardlinks, e)
			continue
		}
		if len(l.nodes) >= 1<<32-1 {
			return fmt.Errorf("more entries than ext4 has inode numbers")
		}
		n := &node{entry: e, ino: uint32(len(l.nodes) + 1)}
		l.nodes = append(l.nodes, n)
		l.byPath[e.Path] = n
		if err := l.link(n, e.Path); err != nil {
			return err
		}
	}
	for _, e := range hardlinks {
		target, ok := l.byPath[e.Link]
		if !ok || target.entry.Type == tree.Dir {
			return fmt.Errorf("hard link %q: its target %q is not a file in the tree", e.Path, e.Link)
		}
		if err := l.link(target, e.Path); err != nil {
			return err
		}
	}
	return nil
}

// link names n p: an entry in p's parent directory.
func (l *layout) link(n *node, p string) error {
	name := path.Base(p)
	if err := checkName(name); err != nil {
		return fmt.Errorf("entry %q: %w", p, err)
	}
	if tree.Clean(p) != p {
		return fmt.Errorf("entry %q: the path is not clean", p)
	}
	parent, ok := l.byPath[path.Dir(p)]
	if !ok || parent.entry.Type != tree.Dir {
		return fmt.Errorf("entry %q: its parent is not a directory of the tree", p)
	}
	n.links++
	if n.links > maxLinks && n.entry.Type != tree.Dir {
		return fmt.Errorf("%q has more than %d names", n.entry.Path, maxLinks)
	}
	parent.children = append(parent.children, dirent{name: name, ino: n.ino, ftype: fileType(n.entry.Type)})
	if n.entry.Type == tree.Dir {
		parent.subdirs++
	}
	return nil
}

func fileType(t tree.Type) uint8 {
	switch t {
	case tree.Dir:
		return ftDir
	case tree.Symlink:
		return ftLink
	case tree.CharDevice:
		return ftChar
	case tree.BlockDevice:
		return ftBlock
	case tree.FIFO:
		return ftFIFO
	}
	return ftReg
}

var typeBits = map[tree.Type]uint16{
	tree.Regular: modeReg, tree.Dir: modeDir, tree.Symlink: modeLink,
	tree.CharDevice: modeChar, tree.BlockDevice: modeBlock, tree.FIFO: modeFIFO,
}

// placeGeometry sizes the groups and inode tables.
func (l *layout) placeGeometry() error {
	need := int64(len(l.nodes))
	g, err := newGeometry(l.opts.SizeBytes/BlockSize, max(l.opts.Inodes, need))
	if err != nil {
		return err
	}
	l.geo, l.alloc = g, newAllocator(g)
	return nil
}

// identity fills in the UUID, the hash seed and the checksum seed.
func (l *layout) identity() error {
	s := &l.super
	s.uuid = l.opts.UUID
	if s.uuid == [16]byte{} {
		if _, err := rand.Read(s.uuid[:]); err != nil {
			return err
		}
		s.uuid[6] = s.uuid[6]&0x0f | 0x40 // version 4
		s.uuid[8] = s.uuid[8]&0x3f | 0x80
		if _, err := rand.Read(s.hashSeed[:]); err != nil {
			return err
		}
	} else {
		sum := sha256.Sum256(append([]byte("ext4 directory hash seed "), s.uuid[:]...))
		copy(s.hashSeed[:], sum[:])
	}
	l.csum = !l.opts.NoChecksums
	s.csum = l.csum
	l.seed = s.csumSeed()
	return nil
}

// ownSeed is node n's checksum seed for its directory and extent blocks.
func (l *layout) ownSeed(ino uint32) uint32 { return inodeSeed(l.seed, ino, 0) }

// baseInode fills in what every inode of the tree has: type and mode,
// owner, times, link count, xattrs.
func (l *layout) baseInode(n *node) error {
	e := n.entry
	if e.Mode&^0o7777 != 0 {
		return fmt.Errorf("%q: mode %#o has more than permission bits", e.Path, e.Mode)
	}
	if err := checkTime(e.ModTime); err != nil {
		return fmt.Errorf("%q: %w", e.Path, err)
	}
	xs, err := splitXattrs(e.Xattrs)
	if err != nil {
		return fmt.Errorf("%q: %w", e.Path, err)
	}
	n.xattrs = xs
	links := n.links
	if e.Type == tree.Dir {
		links = 2 + n.subdirs
		if links > maxLinks {
			links = 1 // dir_nlink: too many to count, as e2fsck counts them
		}
	}
	n.in = inode{
		mode: typeBits[e.Type] | uint16(e.Mode), uid: e.UID, gid: e.GID,
		atime: e.ModTime, mtime: e.ModTime, ctime: l.opts.Now, crtime: l.opts.Now,
		links: uint16(links),
	}
	return nil
}

// placeMetadata lays out every inode but the regular files' data: their
// directory blocks, symlink targets, device numbers and xattrs.
func (l *layout) placeMetadata() error {
	for _, n := range l.nodes {
		if n == nil {
			continue
		}
		if err := l.baseInode(n); err != nil {
			return err
		}
		var err error
		switch e := n.entry; e.Type {
		case tree.Dir:
			l.placeDir(n)
		case tree.Symlink:
			err = l.placeSymlink(n)
		case tree.CharDevice, tree.BlockDevice:
			n.in.iblock, err = encodeDevice(e.Major, e.Minor)
		case tree.Regular:
			n.file = len(l.files)
			l.files = append(l.files, fileRef{path: e.Path, size: e.Size})
		case tree.FIFO:
		default:
			err = fmt.Errorf("%q: unknown type %s", e.Path, e.Type)
		}
		if err != nil {
			return fmt.Errorf("%q: %w", n.entry.Path, err)
		}
		if err := l.placeXattrs(n); err != nil {
			return fmt.Errorf("%q: %w", n.entry.Path, err)
		}
	}
	return nil
}

// placeBlocks gives n the blocks datas, contiguous where the allocator
// allows, mapped by extents from logical block 0.
func (l *layout) placeBlocks(n *node, datas [][]byte) {
	runs := l.alloc.takeRuns(int64(len(datas)), maxExtentLen)
	i := 0
	for _, r := range runs {
		for b := r.start; b < r.end(); b++ {
			l.stored = append(l.stored, storedBlock{b, datas[i]})
			i++
		}
	}
	l.mapExtents(n, extentsOf(0, runs), int64(len(datas)))
}

// mapExtents points n's i_block at exts and counts their blocks (data
// blocks plus the tree's) in i_blocks.
func (l *layout) mapExtents(n *node, exts []extent, dataBlocks int64) {
	root, treeBlocks := extentTree(exts, l.alloc, l.ownSeed(n.ino), l.csum)
	l.stored = append(l.stored, treeBlocks...)
	n.in.iblock = root
	n.in.flags |= flagExtents
	n.in.sectors += (dataBlocks + int64(len(treeBlocks))) * (BlockSize / 512)
}

func (l *layout) placeDir(n *node) {
	parent := n.ino
	if n.ino != rootIno {
		parent = l.byPath[path.Dir(n.entry.Path)].ino
	}
	entries := append([]dirent{{".", n.ino, ftDir}, {"..", parent, ftDir}}, n.children...)
	minBlocks := 1
	if n.ino == lostFoundIno {
		minBlocks = 4 // as mke2fs: room to reconnect files without allocating
	}
	blocks := dirBlocks(entries, minBlocks, l.csum)
	n.children = nil
	if l.csum {
		for _, b := range blocks {
			sealDirBlock(b, l.ownSeed(n.ino))
		}
	}
	n.in.size = int64(len(blocks)) * BlockSize
	l.placeBlocks(n, blocks)
}

// placeSymlink stores a target shorter than i_block in it (a fast
// symlink), a longer one in a block of its own.
func (l *layout) placeSymlink(n *node) error {
	target := n.entry.Link
	switch {
	case target == "":
		return fmt.Errorf("empty symlink target")
	case len(target) >= BlockSize:
		return fmt.Errorf("symlink target of %d bytes, longer than %d", len(target), BlockSize-1)
	}
	for i := 0; i < len(target); i++ {
		if target[i] == 0 {
			return fmt.Errorf("symlink target holds a NUL")
		}
	}
	n.in.size = int64(len(target))
	if len(target) < len(n.in.iblock) {
		copy(n.in.iblock[:], target)
		return nil
	}
	b := make([]byte, BlockSize)
	copy(b, target)
	l.placeBlocks(n, [][]byte{b})
	return nil
}

// placeXattrs puts n's xattrs in its inode when they all fit, else in one
// xattr block.
func (l *layout) placeXattrs(n *node) error {
	if len(n.xattrs) == 0 {
		return nil
	}
	if b := ibodyXattrs(n.xattrs); b != nil {
		n.in.ibodyXattrs = b
		return nil
	}
	b, err := xattrBlock(n.xattrs)
	if err != nil {
		return err
	}
	at := l.alloc.take(1).start
	if l.csum {
		sealXattrBlock(b, l.seed, at)
	}
	l.stored = append(l.stored, storedBlock{at, b})
	n.in.xattrBlock = at
	n.in.sectors += BlockSize / 512
	return nil
}

// placeJournal makes inode 8: contiguous blocks but for group metadata,
// a clean superblock in the first, zeros (holes) after.
func (l *layout) placeJournal() {
	blocks := JournalBlocks(l.geo.blocks)
	l.super.journalBlocks = blocks
	if blocks == 0 {
		return
	}
	n := &node{entry: &tree.Entry{Path: "(journal)", Type: tree.Regular}, ino: journalIno}
	n.in = inode{mode: modeReg | 0o600, links: 1, size: blocks * BlockSize,
		atime: l.opts.Now, ctime: l.opts.Now, mtime: l.opts.Now, crtime: l.opts.Now}
	runs := l.alloc.takeRuns(blocks, maxExtentLen)
	l.stored = append(l.stored, storedBlock{runs[0].start, journalSuper(blocks, l.super.uuid)})
	l.mapExtents(n, extentsOf(0, runs), blocks)
	l.nodes[journalIno-1] = n
	l.super.journalIBlock = n.in.iblock
}

// placeFiles maps each regular file's data: its data runs (holes on the
// host stay holes) on consecutive blocks, then its extent blocks.
func (l *layout) placeFiles() error {
	segs, err := l.fileSegments()
	if err != nil {
		return err
	}
	for _, n := range l.nodes {
		if n == nil || n.entry.Type != tree.Regular || n.ino == journalIno {
			continue
		}
		var exts []extent
		var blocks int64
		for _, s := range segs[n.file] {
			runs := l.alloc.takeRuns(s.count, maxExtentLen)
			logical := s.start
			for _, r := range runs {
				l.data = append(l.data, piece{span: r, kind: pieceFile, file: n.file, logical: logical})
				logical += r.count
			}
			exts = append(exts, extentsOf(s.start, runs)...)
			blocks += s.count
		}
		n.in.size = l.files[n.file].size
		l.mapExtents(n, exts, blocks)
	}
	return nil
}

// fileSegments finds every regular file's data runs, a directory at a
// time: one open directory (through the root), then a stat of each file
// by its name in it, and an open only for files with holes.
func (l *layout) fileSegments() ([][]span, error) {
	order := make([]int, len(l.files))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool {
		return path.Dir(l.files[order[a]].path) < path.Dir(l.files[order[b]].path)
	})
	segs := make([][]span, len(l.files))
	for start := 0; start < len(order); {
		dir := path.Dir(l.files[order[start]].path)
		end := start
		for end < len(order) && path.Dir(l.files[order[end]].path) == dir {
			end++
		}
		if err := l.dirSegments(dir, order[start:end], segs); err != nil {
			return nil, err
		}
		start = end
	}
	return segs, nil
}

func (l *layout) dirSegments(dir string, files []int, segs [][]span) error {
	d, err := l.root.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	for _, i := range files {
		f := l.files[i]
		if (f.size+BlockSize-1)/BlockSize > maxLogicalBlock {
			return fmt.Errorf("%q: %d bytes are more than an ext4 file holds", f.path, f.size)
		}
		s, err := fileSegments(d, path.Base(f.path), f)
		if err != nil {
			return err
		}
		segs[i] = s
	}
	return nil
}
