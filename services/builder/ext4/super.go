package ext4

import "encoding/binary"

// Feature bits.
const (
	compatHasJournal = 0x4
	compatExtAttr    = 0x8
	compatDirIndex   = 0x20

	incompatFiletype = 0x2
	incompatExtents  = 0x40
	incompatFlexBG   = 0x200

	roCompatSparseSuper  = 0x1
	roCompatLargeFile    = 0x2
	roCompatHugeFile     = 0x8
	roCompatDirNlink     = 0x20
	roCompatExtraIsize   = 0x40
	roCompatMetadataCsum = 0x400
)

// Group descriptor flags (metadata_csum).
const (
	bgInodeUninit = 0x1
	bgInodeZeroed = 0x4
)

// superFields are the superblock's values that do not change between
// its copies, filled in by the layout.
type superFields struct {
	inodes, blocks, reserved int64
	freeBlocks, freeInodes   int64
	ipg                      int64
	now                      int64
	uuid, hashSeed           [16]byte
	label                    string
	journalBlocks            int64
	journalIBlock            [60]byte
	overhead                 int64
	csum                     bool
}

// superblock encodes the superblock copy of group grp (1024 bytes).
func (s *superFields) superblock(grp int64) []byte {
	b := make([]byte, 1024)
	le.PutUint32(b[0x00:], uint32(s.inodes))
	le.PutUint32(b[0x04:], uint32(s.blocks))
	le.PutUint32(b[0x08:], uint32(s.reserved))
	le.PutUint32(b[0x0c:], uint32(s.freeBlocks))
	le.PutUint32(b[0x10:], uint32(s.freeInodes))
	le.PutUint32(b[0x14:], 0) // first data block
	le.PutUint32(b[0x18:], 2) // 1024 << 2
	le.PutUint32(b[0x1c:], 2)
	le.PutUint32(b[0x20:], blocksPerGroup)
	le.PutUint32(b[0x24:], blocksPerGroup)
	le.PutUint32(b[0x28:], uint32(s.ipg))
	le.PutUint32(b[0x30:], uint32(s.now)) // write time
	le.PutUint16(b[0x36:], 0xffff)        // max mount count: -1
	le.PutUint16(b[0x38:], 0xef53)
	le.PutUint16(b[0x3a:], 1) // clean
	le.PutUint16(b[0x3c:], 1) // errors: continue
	le.PutUint32(b[0x40:], uint32(s.now))
	le.PutUint32(b[0x4c:], 1) // dynamic revision
	le.PutUint32(b[0x54:], firstIno)
	le.PutUint16(b[0x58:], inodeSize)
	le.PutUint16(b[0x5a:], uint16(grp))
	compat, incompat := uint32(compatExtAttr|compatDirIndex), uint32(incompatFiletype|incompatExtents|incompatFlexBG)
	ro := uint32(roCompatSparseSuper | roCompatLargeFile | roCompatHugeFile | roCompatDirNlink | roCompatExtraIsize)
	if s.journalBlocks > 0 {
		compat |= compatHasJournal
		le.PutUint32(b[0xe0:], journalIno)
		copy(b[0x10c:], s.journalIBlock[:])
		le.PutUint32(b[0x10c+60:], uint32(s.journalBlocks*BlockSize>>32))
		le.PutUint32(b[0x10c+64:], uint32(s.journalBlocks*BlockSize))
		b[0xfd] = 1 // s_jnl_backup_type: inode blocks
	}
	if s.csum {
		ro |= roCompatMetadataCsum
		b[0x175] = 1 // crc32c
	}
	le.PutUint32(b[0x5c:], compat)
	le.PutUint32(b[0x60:], incompat)
	le.PutUint32(b[0x64:], ro)
	copy(b[0x68:0x78], s.uuid[:])
	copy(b[0x78:0x88], s.label)
	copy(b[0xec:0xfc], s.hashSeed[:])
	b[0xfc] = 1                            // half_md4
	le.PutUint32(b[0x100:], 0x4|0x8)       // default mount options: user_xattr, acl
	le.PutUint32(b[0x108:], uint32(s.now)) // mkfs time
	le.PutUint16(b[0x15c:], extraIsize)
	le.PutUint16(b[0x15e:], extraIsize)
	le.PutUint32(b[0x160:], 1) // signed directory hash, as mke2fs on x86
	b[0x174] = logGroupsFlex
	le.PutUint32(b[0x248:], uint32(s.overhead))
	b[0x274] = byte(s.now >> 32) // s_wtime_hi
	b[0x276] = byte(s.now >> 32) // s_mkfs_time_hi
	b[0x277] = byte(s.now >> 32) // s_lastcheck_hi
	if s.csum {
		le.PutUint32(b[0x3fc:], crc32c(^uint32(0), b[:0x3fc]))
	}
	return b
}

// csumSeed is metadata_csum's seed: crc32c of the UUID.
func (s *superFields) csumSeed() uint32 { return crc32c(^uint32(0), s.uuid[:]) }

// groupDesc is one group's descriptor values.
type groupDesc struct {
	blockBitmap, inodeBitmap, inodeTable int64
	freeBlocks, freeInodes, usedDirs     int64
	flags                                uint16
	itableUnused                         int64
	blockBitmapCsum, inodeBitmapCsum     uint32
}

// encode writes the 32-byte descriptor of group grp into b.
func (d *groupDesc) encode(b []byte, grp int64, seed uint32, csum bool) {
	le.PutUint32(b[0x00:], uint32(d.blockBitmap))
	le.PutUint32(b[0x04:], uint32(d.inodeBitmap))
	le.PutUint32(b[0x08:], uint32(d.inodeTable))
	le.PutUint16(b[0x0c:], uint16(d.freeBlocks))
	le.PutUint16(b[0x0e:], uint16(d.freeInodes))
	le.PutUint16(b[0x10:], uint16(d.usedDirs))
	if !csum {
		return
	}
	le.PutUint16(b[0x12:], d.flags)
	le.PutUint16(b[0x18:], uint16(d.blockBitmapCsum))
	le.PutUint16(b[0x1a:], uint16(d.inodeBitmapCsum))
	le.PutUint16(b[0x1c:], uint16(d.itableUnused))
	c := crc32c(seed, le.AppendUint32(nil, uint32(grp)))
	le.PutUint16(b[0x1e:], uint16(crc32c(c, b[:descSize])))
}

// journalSuper is the first block of a clean, empty jbd2 journal of
// blocks blocks (a version 2 superblock, big-endian, s_start 0: nothing
// to replay), as mke2fs writes it.
func journalSuper(blocks int64, uuid [16]byte) []byte {
	be := binary.BigEndian
	b := make([]byte, BlockSize)
	be.PutUint32(b[0:], 0xc03b3998) // magic
	be.PutUint32(b[4:], 4)          // superblock v2
	be.PutUint32(b[12:], BlockSize)
	be.PutUint32(b[16:], uint32(blocks)) // s_maxlen
	be.PutUint32(b[20:], 1)              // s_first
	be.PutUint32(b[24:], 1)              // s_sequence
	copy(b[48:64], uuid[:])
	be.PutUint32(b[64:], 1) // s_nr_users
	return b
}
