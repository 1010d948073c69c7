package ext4

import "hash/crc32"

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// crc32c continues a crc32c (Castagnoli) over p from seed, without the
// pre- and post-inversion of hash/crc32: e2fsprogs' and the kernel's
// ext4_chksum, which metadata_csum fields hold.
func crc32c(seed uint32, p []byte) uint32 {
	return ^crc32.Update(^seed, castagnoli, p)
}
