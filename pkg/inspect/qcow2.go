package inspect

import (
	"fmt"
	"math/bits"
	"strconv"
	"strings"
)

// qcow2 header fields (docs/interop/qcow2.txt, all big-endian).
const (
	qcowV2HeaderLen  = 72
	qcowV3HeaderLen  = 104
	qcowMaxL1Bytes   = 32 << 20 // qemu's implementation limit on the L1 table
	qcowMaxBFNameLen = 1023

	qcowIncompatDirty       = 1 << 0
	qcowIncompatCorrupt     = 1 << 1
	qcowIncompatDataFile    = 1 << 2
	qcowIncompatCompression = 1 << 3
	qcowIncompatExtL2       = 1 << 4
	qcowIncompatKnown       = qcowIncompatDirty | qcowIncompatCorrupt | qcowIncompatDataFile |
		qcowIncompatCompression | qcowIncompatExtL2

	qcowExtEnd           = 0x00000000
	qcowExtBackingFormat = 0xe2792aca
	qcowExtFDE           = 0x0537be77
	qcowExtDataFile      = 0x44415441
)

type qcowHeader struct {
	version, clusterBits, cryptMethod, l1Size, rtClusters, nbSnapshots uint32
	backingOff, size, l1Off, rtOff, snapOff                            uint64
	backingLen, headerLen                                              uint32
	incompat                                                           uint64
	compressionType                                                    byte
}

func parseQCOW2(s *src, rep *Report) error {
	h, err := readQCOWHeader(s)
	if err != nil {
		return err
	}
	if err := s.checkSize(QCOW2, h.size); err != nil {
		return err
	}
	if err := h.checkFeatures(); err != nil {
		return err
	}
	if h.backingOff != 0 {
		return qcowBacking(s, h)
	}
	// The extensions come first so a data file is refused with its name.
	if err := qcowExtensions(s, h); err != nil {
		return err
	}
	if h.incompat&qcowIncompatDataFile != 0 {
		return refuse(QCOW2, ErrDataFile, "qcow2 uses an external data file (incompatible feature bit 2); external data files are not allowed")
	}
	if err := h.checkTables(s.size); err != nil {
		return err
	}
	rep.VirtualSize = int64(h.size)
	rep.Details["version"] = strconv.Itoa(int(h.version))
	rep.Details["cluster_size"] = strconv.Itoa(1 << h.clusterBits)
	rep.Details["compression_type"] = map[byte]string{0: "zlib", 1: "zstd"}[h.compressionType]
	rep.Details["snapshots"] = strconv.Itoa(int(h.nbSnapshots))
	return nil
}

func readQCOWHeader(s *src) (*qcowHeader, error) {
	b, err := s.read(QCOW2, "header", 0, qcowV2HeaderLen)
	if err != nil {
		return nil, err
	}
	h := &qcowHeader{
		version:     be.Uint32(b[4:]),
		backingOff:  be.Uint64(b[8:]),
		backingLen:  be.Uint32(b[16:]),
		clusterBits: be.Uint32(b[20:]),
		size:        be.Uint64(b[24:]),
		cryptMethod: be.Uint32(b[32:]),
		l1Size:      be.Uint32(b[36:]),
		l1Off:       be.Uint64(b[40:]),
		rtOff:       be.Uint64(b[48:]),
		rtClusters:  be.Uint32(b[56:]),
		nbSnapshots: be.Uint32(b[60:]),
		snapOff:     be.Uint64(b[64:]),
		headerLen:   qcowV2HeaderLen,
	}
	if h.version != 2 && h.version != 3 {
		return nil, refuse(QCOW2, ErrUnsupported, "qcow2 version %d is not supported (2 or 3)", h.version)
	}
	if h.clusterBits < 9 || h.clusterBits > 21 {
		return nil, refuse(QCOW2, ErrMalformed, "qcow2 cluster_bits %d is outside 9..21", h.clusterBits)
	}
	if h.version == 3 {
		b, err = s.read(QCOW2, "version 3 header", 0, qcowV3HeaderLen)
		if err != nil {
			return nil, err
		}
		h.incompat = be.Uint64(b[72:])
		h.headerLen = be.Uint32(b[100:])
		if h.headerLen < qcowV3HeaderLen || h.headerLen%8 != 0 || h.headerLen > 1<<h.clusterBits {
			return nil, refuse(QCOW2, ErrMalformed, "qcow2 header_length %d is invalid", h.headerLen)
		}
		if _, err := s.read(QCOW2, "header", 0, int64(h.headerLen)); err != nil {
			return nil, err
		}
		if h.headerLen > qcowV3HeaderLen {
			c, err := s.read(QCOW2, "compression_type field", qcowV3HeaderLen, 1)
			if err != nil {
				return nil, err
			}
			h.compressionType = c[0]
		}
	}
	return h, nil
}

func (h *qcowHeader) checkFeatures() error {
	if unknown := h.incompat &^ qcowIncompatKnown; unknown != 0 {
		return refuse(QCOW2, ErrUnknownFeature, "qcow2 sets unknown incompatible feature bits %s", bitList(unknown))
	}
	if h.incompat&qcowIncompatCorrupt != 0 {
		return refuse(QCOW2, ErrMalformed, "qcow2 is marked corrupt (incompatible feature bit 1)")
	}
	if h.cryptMethod != 0 {
		method := map[uint32]string{1: "AES", 2: "LUKS"}[h.cryptMethod]
		if method == "" {
			return refuse(QCOW2, ErrUnknownFeature, "qcow2 uses unknown encryption method %d", h.cryptMethod)
		}
		return refuse(QCOW2, ErrEncrypted, "qcow2 is encrypted with %s; encrypted qcow2 input is not supported", method)
	}
	if h.incompat&qcowIncompatCompression != 0 && h.compressionType != 1 {
		return refuse(QCOW2, ErrUnknownFeature, "qcow2 compression type %d is unknown", h.compressionType)
	}
	return nil
}

func qcowBacking(s *src, h *qcowHeader) error {
	n := min(h.backingLen, qcowMaxBFNameLen)
	name, err := s.peek(int64(min(h.backingOff, uint64(s.size))), int64(n))
	if err != nil {
		return err
	}
	return refuse(QCOW2, ErrBackingFile, "qcow2 has a backing file %q; backing files are not allowed", string(name))
}

// qcowExtensions walks the header extensions that follow the header inside
// the first cluster.
func qcowExtensions(s *src, h *qcowHeader) error {
	end := min(int64(1)<<h.clusterBits, s.size)
	off := int64(h.headerLen)
	for off+8 <= end {
		b, err := s.read(QCOW2, "header extension", off, 8)
		if err != nil {
			return err
		}
		typ, n := be.Uint32(b), int64(be.Uint32(b[4:]))
		if typ == qcowExtEnd {
			return nil
		}
		if off+8+n > end {
			return refuse(QCOW2, ErrMalformed, "qcow2 header extension 0x%08x (%d bytes at offset %d) runs past the first cluster", typ, n, off)
		}
		switch typ {
		case qcowExtDataFile:
			name, err := s.read(QCOW2, "data file name", off+8, min(n, 4096))
			if err != nil {
				return err
			}
			return refuse(QCOW2, ErrDataFile, "qcow2 names an external data file %q; external data files are not allowed", string(name))
		case qcowExtFDE:
			return refuse(QCOW2, ErrEncrypted, "qcow2 carries a full disk encryption header; encrypted qcow2 input is not supported")
		}
		off += 8 + (n+7)&^7
	}
	return nil
}

// checkTables verifies the tables the header points at lie inside the file.
func (h *qcowHeader) checkTables(size int64) error {
	cs := uint64(1) << h.clusterBits
	l1Bytes := uint64(h.l1Size) * 8
	if l1Bytes > qcowMaxL1Bytes {
		return refuse(QCOW2, ErrMalformed, "qcow2 L1 table of %d entries exceeds qemu's limit", h.l1Size)
	}
	l2Entries := cs / 8
	if h.incompat&qcowIncompatExtL2 != 0 {
		l2Entries = cs / 16
	}
	if need := divCeil(h.size, cs*l2Entries); uint64(h.l1Size) < need {
		return refuse(QCOW2, ErrMalformed, "qcow2 L1 table has %d entries, too few for a virtual size of %s", h.l1Size, HumanBytes(h.size))
	}
	if h.l1Size > 0 {
		if h.l1Off%cs != 0 {
			return refuse(QCOW2, ErrMalformed, "qcow2 L1 table offset %d is not cluster aligned", h.l1Off)
		}
		if !endOK(h.l1Off, l1Bytes, size) {
			return refuse(QCOW2, ErrTruncated, "qcow2 L1 table (offset %d, %d bytes) lies beyond the end of the file (%d bytes): the file is truncated", h.l1Off, l1Bytes, size)
		}
	}
	if h.rtOff == 0 || h.rtOff%cs != 0 || h.rtClusters == 0 {
		return refuse(QCOW2, ErrMalformed, "qcow2 refcount table (offset %d, %d clusters) is invalid", h.rtOff, h.rtClusters)
	}
	overflow, rtBytes := bits.Mul64(uint64(h.rtClusters), cs)
	if overflow != 0 || !endOK(h.rtOff, rtBytes, size) {
		return refuse(QCOW2, ErrTruncated, "qcow2 refcount table (offset %d, %d clusters) lies beyond the end of the file (%d bytes): the file is truncated", h.rtOff, h.rtClusters, size)
	}
	if h.nbSnapshots > 0 && (h.snapOff%cs != 0 || !endOK(h.snapOff, 40, size)) {
		return refuse(QCOW2, ErrTruncated, "qcow2 snapshot table (offset %d) lies beyond the end of the file (%d bytes)", h.snapOff, size)
	}
	return nil
}

func divCeil(a, b uint64) uint64 {
	if b == 0 {
		return 0
	}
	return a/b + min(1, a%b)
}

func bitList(v uint64) string {
	var out []string
	for i := 0; i < 64; i++ {
		if v&(1<<i) != 0 {
			out = append(out, strconv.Itoa(i))
		}
	}
	return fmt.Sprint(strings.Join(out, ", "))
}
