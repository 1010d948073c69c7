package ext4

// Extent trees (EXT4_EXTENTS_FL): a 12-byte header, then 12-byte leaf or
// index entries; the root in i_block holds 4, a tree block 340, followed
// by a 4-byte checksum tail.

const (
	extentMagic     = 0xf30a
	maxExtentLen    = 32768 // the longest initialized extent
	rootEntries     = 4
	blockEntries    = (BlockSize - 12) / 12
	extentTailAt    = 12 + blockEntries*12
	maxLogicalBlock = 1<<32 - 1
)

// extent maps count blocks of a file from logical block logical to
// physical block phys.
type extent struct {
	logical uint32
	count   uint16
	phys    int64
}

// treeEntry is an entry of one tree level: its first logical block and
// the 12 bytes that encode it.
type treeEntry struct {
	first uint32
	raw   [12]byte
}

func leafEntry(e extent) treeEntry {
	t := treeEntry{first: e.logical}
	le.PutUint32(t.raw[0:], e.logical)
	le.PutUint16(t.raw[4:], e.count)
	le.PutUint16(t.raw[6:], uint16(e.phys>>32))
	le.PutUint32(t.raw[8:], uint32(e.phys))
	return t
}

func indexEntry(first uint32, block int64) treeEntry {
	t := treeEntry{first: first}
	le.PutUint32(t.raw[0:], first)
	le.PutUint32(t.raw[4:], uint32(block))
	le.PutUint16(t.raw[8:], uint16(block>>32))
	return t
}

func putExtentHeader(b []byte, entries, maxEntries, depth int) {
	le.PutUint16(b[0:], extentMagic)
	le.PutUint16(b[2:], uint16(entries))
	le.PutUint16(b[4:], uint16(maxEntries))
	le.PutUint16(b[6:], uint16(depth))
}

// extentTree maps exts (sorted, disjoint) from an inode: it returns the
// inode's i_block and the tree blocks below it, which it takes from
// alloc; seed is the inode's checksum seed (metadata_csum) or 0 for none.
func extentTree(exts []extent, alloc *allocator, seed uint32, csum bool) (root [60]byte, blocks []storedBlock) {
	level := make([]treeEntry, len(exts))
	for i, e := range exts {
		level[i] = leafEntry(e)
	}
	depth := 0
	for len(level) > rootEntries {
		var next []treeEntry
		for start := 0; start < len(level); start += blockEntries {
			chunk := level[start:min(start+blockEntries, len(level))]
			b := make([]byte, BlockSize)
			putExtentHeader(b, len(chunk), blockEntries, depth)
			for i, e := range chunk {
				copy(b[12+12*i:], e.raw[:])
			}
			if csum {
				le.PutUint32(b[extentTailAt:], crc32c(seed, b[:extentTailAt]))
			}
			at := alloc.take(1).start
			blocks = append(blocks, storedBlock{at, b})
			next = append(next, indexEntry(chunk[0].first, at))
		}
		level = next
		depth++
	}
	putExtentHeader(root[:], len(level), rootEntries, depth)
	for i, e := range level {
		copy(root[12+12*i:], e.raw[:])
	}
	return root, blocks
}

// storedBlock is a metadata block kept in memory.
type storedBlock struct {
	at   int64
	data []byte
}

// extentsOf turns runs of physical blocks holding logical blocks from
// logical on into extents of at most maxExtentLen blocks.
func extentsOf(logical int64, runs []span) []extent {
	var out []extent
	for _, r := range runs {
		for r.count > 0 {
			n := min(r.count, maxExtentLen)
			out = append(out, extent{logical: uint32(logical), count: uint16(n), phys: r.start})
			logical += n
			r.start += n
			r.count -= n
		}
	}
	return out
}
