package ext4

import (
	"encoding/binary"
	"fmt"
)

var le = binary.LittleEndian

// Inode numbers mke2fs reserves, and the first one for files.
const (
	rootIno      = 2
	journalIno   = 8
	lostFoundIno = 11
	firstIno     = 11
)

// Inode flags and mode type bits.
const (
	flagExtents = 0x80000
	modeDir     = 0o040000
	modeReg     = 0o100000
	modeLink    = 0o120000
	modeChar    = 0o020000
	modeBlock   = 0o060000
	modeFIFO    = 0o010000
)

// extraIsize is the size of the fields past the first 128 bytes of an
// inode this package fills (up to i_projid), as mke2fs sets it.
const extraIsize = 32

// ibodyXattrStart is where an inode's xattrs begin, and ibodyXattrSize the
// bytes there for the magic, entries, their end marker and values.
const (
	ibodyXattrStart = 128 + extraIsize
	ibodyXattrSize  = inodeSize - ibodyXattrStart
)

// maxLinks is the largest link count ext4 stores (EXT4_LINK_MAX); a
// directory with more subdirectories counts 1 (dir_nlink).
const maxLinks = 65000

// Timestamps hold 32 bits of seconds and 2 epoch bits: -2^31 to about
// 2446. e2fsck takes seconds from 2310-04-04 on (epoch 3, low word
// negative) for pre-1970 times mis-encoded by old kernels, so they end
// there.
const (
	MinTime = -1 << 31
	MaxTime = 3<<32 - 1<<31 - 1
)

// inode is one inode's fields before it is encoded.
type inode struct {
	mode                uint16
	uid, gid            uint32
	size                int64
	atime, ctime, mtime int64
	crtime              int64
	links               uint16
	sectors             int64 // i_blocks: 512-byte units
	flags               uint32
	iblock              [60]byte
	xattrBlock          int64
	ibodyXattrs         []byte // from ibodyXattrStart on, magic included
	small               bool   // no extra fields (mke2fs's reserved inodes)
}

// encodeTime splits t into the 32-bit seconds field and the epoch bits
// of the matching _extra field.
func encodeTime(t int64) (uint32, uint32) {
	lo := int32(t)
	return uint32(lo), uint32((t-int64(lo))>>32) & 3
}

func checkTime(t int64) error {
	if t < MinTime || t > MaxTime {
		return fmt.Errorf("time %d is outside what ext4 stores (%d to %d)", t, int64(MinTime), int64(MaxTime))
	}
	return nil
}

// encode writes the inode into b (inodeSize bytes, zeroed) without its
// checksum.
func (in *inode) encode(b []byte) {
	le.PutUint16(b[0:], in.mode)
	le.PutUint16(b[2:], uint16(in.uid))
	le.PutUint32(b[4:], uint32(in.size))
	at, atx := encodeTime(in.atime)
	ct, ctx := encodeTime(in.ctime)
	mt, mtx := encodeTime(in.mtime)
	le.PutUint32(b[8:], at)
	le.PutUint32(b[12:], ct)
	le.PutUint32(b[16:], mt)
	le.PutUint16(b[24:], uint16(in.gid))
	le.PutUint16(b[26:], in.links)
	le.PutUint32(b[28:], uint32(in.sectors))
	le.PutUint32(b[32:], in.flags)
	copy(b[40:100], in.iblock[:])
	le.PutUint32(b[104:], uint32(in.xattrBlock))
	le.PutUint32(b[108:], uint32(in.size>>32))
	le.PutUint16(b[116:], uint16(in.sectors>>32))
	le.PutUint16(b[118:], uint16(in.xattrBlock>>32))
	le.PutUint16(b[120:], uint16(in.uid>>16))
	le.PutUint16(b[122:], uint16(in.gid>>16))
	if in.small {
		return
	}
	crt, crtx := encodeTime(in.crtime)
	le.PutUint16(b[128:], extraIsize)
	le.PutUint32(b[132:], ctx)
	le.PutUint32(b[136:], mtx)
	le.PutUint32(b[140:], atx)
	le.PutUint32(b[144:], crt)
	le.PutUint32(b[148:], crtx)
	copy(b[ibodyXattrStart:], in.ibodyXattrs)
}

// setInodeChecksum stores the inode's crc32c (metadata_csum) in
// i_checksum_lo and, when the extra fields hold it, i_checksum_hi.
func setInodeChecksum(b []byte, seed uint32, ino uint32) {
	le.PutUint16(b[0x7c:], 0)
	hasHi := le.Uint16(b[128:]) >= 4
	if hasHi {
		le.PutUint16(b[0x82:], 0)
	}
	c := crc32c(inodeSeed(seed, ino, le.Uint32(b[100:])), b[:inodeSize])
	le.PutUint16(b[0x7c:], uint16(c))
	if hasHi {
		le.PutUint16(b[0x82:], uint16(c>>16))
	}
}

// inodeSeed is the checksum seed of an inode's own blocks (extent tree,
// directory): the filesystem's seed, the inode number and generation.
func inodeSeed(seed, ino, generation uint32) uint32 {
	var b [8]byte
	le.PutUint32(b[0:], ino)
	le.PutUint32(b[4:], generation)
	return crc32c(seed, b[:])
}

// encodeDevice puts a device number in i_block as the kernel does: the
// old 16-bit form in i_block[0] when major and minor fit in a byte, else
// the new 32-bit form (12 bits of major, 20 of minor) in i_block[1].
func encodeDevice(major, minor uint32) ([60]byte, error) {
	var ib [60]byte
	switch {
	case major < 256 && minor < 256:
		le.PutUint32(ib[0:], major<<8|minor)
	case major < 1<<12 && minor < 1<<20:
		le.PutUint32(ib[4:], minor&0xff|major<<8|(minor&^0xff)<<12)
	default:
		return ib, fmt.Errorf("device %d:%d does not fit ext4's 12-bit major and 20-bit minor", major, minor)
	}
	return ib, nil
}
