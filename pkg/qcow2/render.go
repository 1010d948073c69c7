package qcow2

import (
	"encoding/binary"
	"slices"
)

// headerLength is the length of the version 3 header without optional
// fields; the zero bytes after it end the (empty) list of extensions.
const headerLength = 104

var be = binary.BigEndian

// render writes metadata cluster c (c < dataStart) into b, which is one
// zeroed cluster.
func (l *layout) render(c int64, b []byte) {
	switch {
	case c == 0:
		l.header(b)
	case c < l.rtStart():
		l.l1Table(c-l.l1Start(), b)
	case c < l.rbStart():
		l.refcountTable(c-l.rtStart(), b)
	case c < l.l2Start():
		l.refcountBlock(c-l.rbStart(), b)
	default:
		l.l2Table(l.l2s[c-l.l2Start()], b)
	}
}

// header writes the image header: version 3, no backing file, no
// encryption, no snapshots, no feature bits.
func (l *layout) header(b []byte) {
	copy(b, "QFI\xfb")
	be.PutUint32(b[4:], 3)
	be.PutUint32(b[20:], clusterBits)
	be.PutUint64(b[24:], uint64(l.virtualSize))
	if l.l1Clusters > 0 { // else offset 0, as qemu-img writes it
		be.PutUint32(b[36:], uint32(l.l1Size()))
		be.PutUint64(b[40:], uint64(l.l1Start()*ClusterSize))
	}
	be.PutUint64(b[48:], uint64(l.rtStart()*ClusterSize))
	be.PutUint32(b[56:], uint32(l.rtClusters))
	be.PutUint32(b[96:], refcountOrder)
	be.PutUint32(b[100:], headerLength)
}

// l1Table writes cluster i of the L1 table: an entry per L2 table there is.
func (l *layout) l1Table(i int64, b []byte) {
	first := i * (ClusterSize / 8)
	k, _ := slices.BinarySearch(l.l2s, first)
	for ; k < len(l.l2s) && l.l2s[k] < first+ClusterSize/8; k++ {
		c := l.l2Start() + int64(k)
		be.PutUint64(b[(l.l2s[k]-first)*8:], uint64(c*ClusterSize)|copiedFlag)
	}
}

// refcountTable writes cluster i of the refcount table: the offsets of the
// refcount blocks it covers.
func (l *layout) refcountTable(i int64, b []byte) {
	first := i * rtEntries
	for k := first; k < min(first+rtEntries, l.rbClusters); k++ {
		be.PutUint64(b[(k-first)*8:], uint64((l.rbStart()+k)*ClusterSize))
	}
}

// refcountBlock writes refcount block i: every cluster of the image is used
// once, none after its end.
func (l *layout) refcountBlock(i int64, b []byte) {
	first := i * rbEntries
	for h := first; h < min(first+rbEntries, l.clusters()); h++ {
		be.PutUint16(b[(h-first)*2:], 1)
	}
}

// l2Table writes the L2 table of L1 index idx: where each of its guest
// clusters that holds data is stored.
func (l *layout) l2Table(idx int64, b []byte) {
	g0, g1 := idx*l2Entries, (idx+1)*l2Entries
	for _, r := range l.runs[l.runsFrom(g0):] {
		if r.guest >= g1 {
			break
		}
		for g := max(r.guest, g0); g < min(r.guest+r.n, g1); g++ {
			host := l.dataStart() + r.first + g - r.guest
			be.PutUint64(b[(g-g0)*8:], uint64(host*ClusterSize)|copiedFlag)
		}
	}
}
