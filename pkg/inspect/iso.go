package inspect

import (
	"bytes"
	"strconv"
)

// ISO 9660 primary volume descriptor at 32 KiB: type 1, "CD001", volume id
// @40, volume space size (both-endian, LE half) @80, logical block size @128.
// UDF images carry "BEA01"/"NSR0x" descriptors in the same area instead.
func parseISO(s *src, rep *Report) error {
	pvd, err := s.read(ISO, "volume descriptor", isoDescStart, 2048)
	if err != nil {
		return err
	}
	// qemu reads an ISO as raw data, so the guest sees the whole file.
	rep.VirtualSize = s.size
	if pvd[0] != 1 || !bytes.Equal(pvd[1:6], []byte("CD001")) {
		rep.Details["filesystem"] = "udf"
		return nil
	}
	blocks, blockSize := uint64(le.Uint32(pvd[80:])), uint64(le.Uint16(pvd[128:]))
	if vol := blocks * blockSize; vol > uint64(s.size) {
		return refuse(ISO, ErrTruncated, "iso volume claims %s but the file has %s: the file is truncated", HumanBytes(vol), HumanBytes(uint64(s.size)))
	}
	rep.Details["filesystem"] = "iso9660"
	rep.Details["volume_id"] = string(bytes.TrimRight(pvd[40:72], " \x00"))
	rep.Details["volume_size"] = strconv.FormatUint(blocks*blockSize, 10)
	return nil
}
