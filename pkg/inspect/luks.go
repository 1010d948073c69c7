package inspect

import "strconv"

// LUKS header (big-endian): magic "LUKS\xba\xbe", version u16 @6. LUKS1 keeps
// the payload offset in 512-byte sectors @104; LUKS2 the binary header size
// @8 (cryptsetup's on-disk format documents).
func parseLUKS(s *src, rep *Report) error {
	h, err := s.read(LUKS, "header", 0, 592)
	if err != nil {
		return err
	}
	v := be.Uint16(h[6:])
	switch v {
	case 1:
		payload := uint64(be.Uint32(h[104:])) * sector
		if payload > uint64(s.size) {
			return refuse(LUKS, ErrTruncated, "luks payload offset %d lies beyond the end of the file (%d bytes): the file is truncated", payload, s.size)
		}
		rep.VirtualSize = s.size - int64(payload)
	case 2:
		hdr := be.Uint64(h[8:])
		if hdr > uint64(s.size) {
			return refuse(LUKS, ErrTruncated, "luks2 header of %d bytes is larger than the file (%d bytes): the file is truncated", hdr, s.size)
		}
		// The payload offset lives in the JSON area; the file size bounds it.
		rep.VirtualSize = s.size
	default:
		return refuse(LUKS, ErrUnsupported, "luks version %d is not supported", v)
	}
	rep.Details["version"] = strconv.Itoa(int(v))
	return nil
}
