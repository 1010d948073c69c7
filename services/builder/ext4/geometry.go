package ext4

import (
	"fmt"
	"math"
	"sort"
)

// Fixed parameters of the filesystems this package makes.
const (
	BlockSize      = 4096
	blocksPerGroup = 32768
	inodeSize      = 256
	inodesPerBlock = BlockSize / inodeSize
	maxInodesGroup = BlockSize * 8
	descSize       = 32
	groupsPerFlex  = 16
	logGroupsFlex  = 4
)

// JournalBlocks is the journal size, in blocks, mke2fs (e2fsprogs 1.47,
// ext2fs_default_journal_size) gives a filesystem of blocks 4 KiB blocks:
// none below 2048 blocks.
func JournalBlocks(blocks int64) int64 {
	for _, r := range journalTable {
		if blocks < r.below {
			return r.journal
		}
	}
	return 0 // not reached: the last row holds every size
}

var journalTable = []struct{ below, journal int64 }{
	{2048, 0},
	{32768, 1024},
	{256 * 1024, 4096},
	{512 * 1024, 8192},
	{4096 * 1024, 16384},
	{8192 * 1024, 32768},
	{16384 * 1024, 65536},
	{32768 * 1024, 131072},
	{math.MaxInt64, 262144},
}

// span is a run of blocks.
type span struct{ start, count int64 }

func (s span) end() int64 { return s.start + s.count }

// geometry is where every group's metadata lives.
type geometry struct {
	blocks    int64 // filesystem size in blocks
	groups    int64
	ipg       int64 // inodes per group
	itb       int64 // inode table blocks per group
	gdtBlocks int64
	// Per group: the block bitmap, inode bitmap and inode table.
	blockBitmap, inodeBitmap, inodeTable []int64
	// meta holds every metadata run (superblock copies with their
	// descriptor tables, bitmaps, inode tables), sorted.
	meta []span
}

// hasSuper tells whether group g holds a superblock copy (sparse_super):
// groups 0 and 1 and the powers of 3, 5 and 7.
func hasSuper(g int64) bool {
	if g <= 1 {
		return true
	}
	for _, base := range []int64{3, 5, 7} {
		p := base
		for p < g {
			p *= base
		}
		if p == g {
			return true
		}
	}
	return false
}

// newGeometry places the metadata of a filesystem of blocks blocks holding
// at least inodes inodes. A last group too small for its own metadata is
// dropped, as mke2fs does.
func newGeometry(blocks, inodes int64) (*geometry, error) {
	for {
		g, err := placeGroups(blocks, inodes)
		if err == nil {
			return g, nil
		}
		last := (blocks - 1) / blocksPerGroup * blocksPerGroup
		if last == 0 || err != errLastGroup {
			return nil, err
		}
		blocks = last
	}
}

var errLastGroup = fmt.Errorf("the last group cannot hold its metadata")

func placeGroups(blocks, inodes int64) (*geometry, error) {
	g := &geometry{blocks: blocks, groups: (blocks + blocksPerGroup - 1) / blocksPerGroup}
	ipg := (inodes + g.groups - 1) / g.groups
	ipg = (ipg + inodesPerBlock - 1) / inodesPerBlock * inodesPerBlock
	g.ipg = max(ipg, inodesPerBlock)
	if g.ipg > maxInodesGroup {
		return nil, &SpaceError{What: "inodes", Need: inodes, Have: maxInodesGroup * g.groups}
	}
	if g.ipg*g.groups > math.MaxUint32 {
		return nil, fmt.Errorf("%d inodes are more than ext4 can count", g.ipg*g.groups)
	}
	g.itb = g.ipg / inodesPerBlock
	g.gdtBlocks = (g.groups*descSize + BlockSize - 1) / BlockSize
	g.blockBitmap = make([]int64, g.groups)
	g.inodeBitmap = make([]int64, g.groups)
	g.inodeTable = make([]int64, g.groups)
	for grp := range g.groups {
		if hasSuper(grp) {
			g.meta = append(g.meta, span{grp * blocksPerGroup, 1 + g.gdtBlocks})
		}
	}
	for first := int64(0); first < g.groups; first += groupsPerFlex {
		n := min(groupsPerFlex, g.groups-first)
		at := first * blocksPerGroup
		if hasSuper(first) {
			at += 1 + g.gdtBlocks
		}
		for i := range n {
			g.blockBitmap[first+i] = at + i
			g.inodeBitmap[first+i] = at + n + i
			g.inodeTable[first+i] = at + 2*n + i*g.itb
		}
		g.meta = append(g.meta, span{at, 2*n + n*g.itb})
	}
	sort.Slice(g.meta, func(i, j int) bool { return g.meta[i].start < g.meta[j].start })
	for i, m := range g.meta {
		if m.end() > blocks || (i > 0 && g.meta[i-1].end() > m.start) {
			return nil, errLastGroup
		}
	}
	return g, nil
}

func (g *geometry) groupStart(grp int64) int64 { return grp * blocksPerGroup }

func (g *geometry) groupEnd(grp int64) int64 {
	return min((grp+1)*blocksPerGroup, g.blocks)
}

// dataStart is the first block after group 0's metadata.
func (g *geometry) dataStart() int64 {
	end := int64(0)
	for _, m := range g.meta {
		if m.start > end {
			break
		}
		end = max(end, m.end())
	}
	return end
}

// usedIn is the number of blocks of group grp in use: metadata, and every
// block below allocEnd (the allocator's cursor).
func (g *geometry) usedIn(grp, allocEnd int64) int64 {
	var n int64
	g.eachUsed(grp, allocEnd, func(s span) { n += s.count })
	return n
}

// eachUsed calls fn with the used runs of group grp, in order, disjoint
// and merged.
func (g *geometry) eachUsed(grp, allocEnd int64, fn func(span)) {
	lo, hi := g.groupStart(grp), g.groupEnd(grp)
	var runs []span
	clip := func(s span) {
		start, end := max(s.start, lo), min(s.end(), hi)
		if start < end {
			runs = append(runs, span{start, end - start})
		}
	}
	clip(span{0, allocEnd})
	i := sort.Search(len(g.meta), func(i int) bool { return g.meta[i].end() > lo })
	for ; i < len(g.meta) && g.meta[i].start < hi; i++ {
		clip(g.meta[i])
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].start < runs[j].start })
	var cur span
	for _, r := range runs {
		switch {
		case cur.count == 0:
			cur = r
		case r.start <= cur.end():
			cur.count = max(cur.end(), r.end()) - cur.start
		default:
			fn(cur)
			cur = r
		}
	}
	if cur.count > 0 {
		fn(cur)
	}
}

// allocator hands out the blocks after group 0's metadata in order,
// stepping over the other groups' metadata. It does not stop at the end of
// the filesystem, so a tree that does not fit can say how much it needs.
type allocator struct {
	g    *geometry
	next int64
	mi   int // index of the first metadata run ending after next
}

func newAllocator(g *geometry) *allocator {
	return &allocator{g: g, next: g.dataStart()}
}

// take returns a run of at most n (> 0) free blocks at the cursor.
func (a *allocator) take(n int64) span {
	for a.mi < len(a.g.meta) && a.g.meta[a.mi].end() <= a.next {
		a.mi++
	}
	for a.mi < len(a.g.meta) && a.g.meta[a.mi].start <= a.next {
		a.next = a.g.meta[a.mi].end()
		a.mi++
	}
	if a.mi < len(a.g.meta) {
		n = min(n, a.g.meta[a.mi].start-a.next)
	}
	s := span{a.next, n}
	a.next += n
	return s
}

// takeRuns allocates n blocks as runs of at most maxRun each.
func (a *allocator) takeRuns(n, maxRun int64) []span {
	var out []span
	for n > 0 {
		s := a.take(min(n, maxRun))
		if len(out) > 0 && out[len(out)-1].end() == s.start && out[len(out)-1].count+s.count <= maxRun {
			out[len(out)-1].count += s.count
		} else {
			out = append(out, s)
		}
		n -= s.count
	}
	return out
}

// SpaceError says the filesystem is too small for the tree: Need blocks
// (or inodes) are needed, Have are there.
type SpaceError struct {
	What       string // "blocks" or "inodes"
	Need, Have int64
}

func (e *SpaceError) Error() string {
	return fmt.Sprintf("the filesystem is too small: the tree needs %d %s, it has %d", e.Need, e.What, e.Have)
}
