package ext4

import (
	"fmt"
	"sort"
	"strings"
)

const xattrMagic = 0xea020000

// xattrPrefixes are the name prefixes ext4 stores as an index, most
// specific first; the POSIX ACL names are whole names.
var xattrPrefixes = []struct {
	prefix string
	index  uint8
}{
	{"system.posix_acl_default", 3},
	{"system.posix_acl_access", 2},
	{"security.", 6},
	{"trusted.", 4},
	{"user.", 1},
}

// xattr is one extended attribute as stored: a name index, the rest of
// the name, and the value.
type xattr struct {
	index uint8
	name  string
	value []byte
}

// entrySize and valueSize are the bytes an entry and its value take
// (EXT2_EXT_ATTR_LEN, EXT2_EXT_ATTR_SIZE).
func (x xattr) entrySize() int { return (len(x.name) + 16 + 3) &^ 3 }
func (x xattr) valueSize() int { return (len(x.value) + 3) &^ 3 }

// splitXattrs turns a tree entry's xattrs into ext4's form, sorted as
// ext4 keeps a block's entries (by index, name length, name). Names are
// printable ASCII in the user, trusted and security namespaces, or one
// of the POSIX ACLs, whose values are converted to ext4's ACL format.
func splitXattrs(m map[string]string) ([]xattr, error) {
	out := make([]xattr, 0, len(m))
	for name, value := range m {
		x, err := splitXattr(name, value)
		if err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.index != b.index {
			return a.index < b.index
		}
		if len(a.name) != len(b.name) {
			return len(a.name) < len(b.name)
		}
		return a.name < b.name
	})
	return out, nil
}

func splitXattr(name, value string) (xattr, error) {
	for i := 0; i < len(name); i++ {
		if c := name[i]; c < 0x20 || c > 0x7e {
			return xattr{}, fmt.Errorf("xattr name %q holds the byte %#02x", name, c)
		}
	}
	for _, p := range xattrPrefixes {
		rest, ok := strings.CutPrefix(name, p.prefix)
		if !ok {
			continue
		}
		x := xattr{index: p.index, name: rest, value: []byte(value)}
		switch {
		case p.index == 2 || p.index == 3:
			if rest != "" {
				break // system.posix_acl_access… is no ACL
			}
			acl, err := diskACL([]byte(value))
			if err != nil {
				return xattr{}, fmt.Errorf("xattr %s: %w", name, err)
			}
			x.value = acl
			return x, nil
		case rest == "":
			return xattr{}, fmt.Errorf("xattr %q has nothing after its namespace", name)
		case len(rest) > 255:
			return xattr{}, fmt.Errorf("xattr name %.40q… is longer than ext4 stores", name)
		default:
			return x, nil
		}
	}
	return xattr{}, fmt.Errorf("xattr %q is in no namespace ext4 is given here (user., trusted., security., the POSIX ACLs)", name)
}

// ACL tags (acl/acl_ea.h) and the versions of the kernel's xattr form and
// ext4's on-disk form.
const (
	aclUserObj  = 0x01
	aclUser     = 0x02
	aclGroupObj = 0x04
	aclGroup    = 0x08
	aclMask     = 0x10
	aclOther    = 0x20

	aclXattrVersion = 2
	aclDiskVersion  = 1
)

// diskACL converts a POSIX ACL from the kernel's xattr form (a version 2
// header, then 8-byte tag, permission, id entries) to ext4's: a version 1
// header, then 4-byte entries for the owner, group, mask and other, 8-byte
// ones (with the id) for named users and groups. Like e2fsprogs, it
// refuses a wrong version, a size that is not whole entries, no entries
// and unknown tags.
func diskACL(v []byte) ([]byte, error) {
	if len(v) < 4 || le.Uint32(v) != aclXattrVersion {
		return nil, fmt.Errorf("not a version %d POSIX ACL", aclXattrVersion)
	}
	if (len(v)-4)%8 != 0 || len(v) == 4 {
		return nil, fmt.Errorf("a POSIX ACL of %d bytes is not a whole number of entries", len(v))
	}
	out := le.AppendUint32(nil, aclDiskVersion)
	for e := v[4:]; len(e) > 0; e = e[8:] {
		tag := le.Uint16(e)
		out = append(out, e[:4]...) // tag and permissions
		switch tag {
		case aclUserObj, aclGroupObj, aclMask, aclOther:
		case aclUser, aclGroup:
			out = append(out, e[4:8]...)
		default:
			return nil, fmt.Errorf("POSIX ACL entry with the unknown tag %#x", tag)
		}
	}
	return out, nil
}

// xattrHash is e2fsprogs' ext2fs_ext_attr_hash_entry: the name's bytes,
// then the value's 32-bit little-endian words (zero-padded).
func xattrHash(x xattr) uint32 {
	var h uint32
	for i := 0; i < len(x.name); i++ {
		h = h<<5 ^ h>>27 ^ uint32(x.name[i])
	}
	padded := make([]byte, x.valueSize())
	copy(padded, x.value)
	for i := 0; i < len(padded); i += 4 {
		h = h<<16 ^ h>>16 ^ le.Uint32(padded[i:])
	}
	return h
}

// putXattrs writes xs's entries at the start of area and their values at
// its end, downwards, as e2fsprogs does; value offsets count from base
// bytes before area. With hashes set, each entry carries its hash, which
// it returns. ok is false when they do not fit.
func putXattrs(area []byte, base int, xs []xattr, hashes bool) (entryHashes []uint32, ok bool) {
	need := 4 // the end marker
	for _, x := range xs {
		need += x.entrySize() + x.valueSize()
	}
	if need > len(area) {
		return nil, false
	}
	off, end := 0, len(area)
	for _, x := range xs {
		end -= x.valueSize()
		copy(area[end:], x.value)
		area[off] = byte(len(x.name))
		area[off+1] = x.index
		le.PutUint16(area[off+2:], uint16(base+end))
		le.PutUint32(area[off+8:], uint32(len(x.value)))
		if hashes {
			h := xattrHash(x)
			le.PutUint32(area[off+12:], h)
			entryHashes = append(entryHashes, h)
		}
		copy(area[off+16:], x.name)
		off += x.entrySize()
	}
	return entryHashes, true
}

// ibodyXattrs encodes xs for the inode's extra space (magic, entries,
// values), or returns nil when they do not all fit there.
func ibodyXattrs(xs []xattr) []byte {
	b := make([]byte, ibodyXattrSize)
	le.PutUint32(b, xattrMagic)
	if _, ok := putXattrs(b[4:], 0, xs, false); !ok {
		return nil
	}
	return b
}

// xattrBlock encodes xs as one xattr block (header, sorted entries,
// values), without its checksum.
func xattrBlock(xs []xattr) ([]byte, error) {
	b := make([]byte, BlockSize)
	hashes, ok := putXattrs(b[32:], 32, xs, true)
	if !ok {
		return nil, fmt.Errorf("the xattrs take more than one %d-byte block", BlockSize)
	}
	le.PutUint32(b[0:], xattrMagic)
	le.PutUint32(b[4:], 1) // h_refcount
	le.PutUint32(b[8:], 1) // h_blocks
	var h uint32
	for _, eh := range hashes {
		if eh == 0 {
			h = 0
			break
		}
		h = h<<16 ^ h>>16 ^ eh
	}
	le.PutUint32(b[12:], h)
	return b, nil
}

// sealXattrBlock writes an xattr block's checksum (metadata_csum): over
// the block number and the block.
func sealXattrBlock(b []byte, seed uint32, at int64) {
	le.PutUint32(b[16:], 0)
	c := crc32c(seed, le.AppendUint64(nil, uint64(at)))
	le.PutUint32(b[16:], crc32c(c, b))
}
