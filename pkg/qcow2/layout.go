// Package qcow2 writes a qcow2 (version 3) image of a disk as one
// sequential stream whose exact size is known before its first byte: what
// an S3 upload of the image needs, without writing the image to a file
// first (the way `qemu-img convert -O qcow2` does).
//
// The disk is a Disk: a size, the ranges of it that may hold data (the
// rest is zeros) and a ReadAt. Open makes one of a sparse raw file, whose
// data ranges the file system reports (SEEK_DATA, SEEK_HOLE); FromDisk
// takes any, such as a file system image that is only virtual.
//
// The image has 64 KiB clusters, 16-bit refcounts, no backing file, no
// compression, no extensions, no snapshots. Its layout is fixed by the
// disk's data ranges alone: the header cluster, the L1 table, the
// refcount table, the refcount blocks, the L2 tables, then the data
// clusters in guest order. Every offset is known from the start, so
// every cluster of the image can be produced on demand, in any order
// (Image is an io.ReaderAt) from the disk and a few slices of metadata
// proportional to the allocated clusters.
//
// A cluster any data range touches is stored. By default the ranges are
// then read once to leave out clusters that are all zero, as qemu-img
// convert does (mkfs writes many of them); see Options.KeepZeroClusters.
//
// The disk must not change while an Image of it is read: the image would
// be inconsistent. It is meant for the disks a service has just made
// itself; an untrusted disk goes through qemu-img.
//
// The format: qemu's docs/interop/qcow2.txt.
package qcow2

import (
	"fmt"
	"sort"
)

// ClusterSize is the size of every cluster of a written image.
const ClusterSize = 1 << clusterBits

const (
	clusterBits   = 16
	l2Entries     = ClusterSize / 8 // guest clusters one L2 table maps
	refcountOrder = 4               // 16-bit refcounts
	rbEntries     = ClusterSize * 8 / (1 << refcountOrder)
	rtEntries     = ClusterSize / 8 // refcount blocks one refcount table cluster points to
	sectorSize    = 512
	copiedFlag    = uint64(1) << 63 // refcount exactly one (L1 and L2 entries)

	// maxL1Bytes is qemu's limit on the L1 table: it refuses to open an
	// image whose table is larger. It allows 2 PiB of virtual size.
	maxL1Bytes = 32 << 20
)

// MaxVirtualSize is the largest virtual size an image may have (qemu's
// limit on the L1 table with 64 KiB clusters).
const MaxVirtualSize = maxL1Bytes / 8 * l2Entries * ClusterSize

// run is a range of guest clusters stored one after the other: guest
// clusters guest … guest+n-1 are data clusters first … first+n-1 (counted
// from the first data cluster of the image).
type run struct {
	guest, first, n int64
}

// layout is where everything of an image is, in clusters of the image file.
type layout struct {
	virtualSize int64
	runs        []run   // in guest order, not adjacent to one another
	l2s         []int64 // the L1 indices that have an L2 table, ascending
	l1Clusters  int64
	rtClusters  int64 // refcount table
	rbClusters  int64 // refcount blocks
	dataCount   int64
}

// newLayout lays out an image of virtualSize bytes whose data is in runs
// (guest order, merged, within the virtual size).
func newLayout(virtualSize int64, runs []run) (*layout, error) {
	if virtualSize < 0 || virtualSize > MaxVirtualSize {
		return nil, fmt.Errorf("qcow2: virtual size %d is out of range (0 to %d bytes)", virtualSize, int64(MaxVirtualSize))
	}
	l := &layout{virtualSize: virtualSize, runs: runs}
	for i := range l.runs {
		l.runs[i].first = l.dataCount
		l.dataCount += l.runs[i].n
		for idx := l.runs[i].guest / l2Entries; idx <= (l.runs[i].guest+l.runs[i].n-1)/l2Entries; idx++ {
			if len(l.l2s) == 0 || l.l2s[len(l.l2s)-1] != idx {
				l.l2s = append(l.l2s, idx)
			}
		}
	}
	l.l1Clusters = ceilDiv(l.l1Size()*8, ClusterSize) // none for an empty disk
	// The refcount blocks count every cluster, themselves and the
	// refcount table included: grow both until they cover the whole.
	l.rbClusters, l.rtClusters = 1, 1
	for {
		total := l.clusters()
		rb := max(l.rbClusters, ceilDiv(total, rbEntries))
		rt := max(l.rtClusters, ceilDiv(rb, rtEntries))
		if rb == l.rbClusters && rt == l.rtClusters {
			return l, nil
		}
		l.rbClusters, l.rtClusters = rb, rt
	}
}

// l1Size is the number of L1 entries: one per L2 table the virtual size
// needs.
func (l *layout) l1Size() int64 {
	return ceilDiv(ceilDiv(l.virtualSize, ClusterSize), l2Entries)
}

// The first cluster of each area, in order.
func (l *layout) l1Start() int64   { return 1 }
func (l *layout) rtStart() int64   { return l.l1Start() + l.l1Clusters }
func (l *layout) rbStart() int64   { return l.rtStart() + l.rtClusters }
func (l *layout) l2Start() int64   { return l.rbStart() + l.rbClusters }
func (l *layout) dataStart() int64 { return l.l2Start() + int64(len(l.l2s)) }
func (l *layout) clusters() int64  { return l.dataStart() + l.dataCount }

// size is the byte size of the image file.
func (l *layout) size() int64 { return l.clusters() * ClusterSize }

// runOf returns the run holding data cluster d (0 ≤ d < dataCount).
func (l *layout) runOf(d int64) run {
	i := sort.Search(len(l.runs), func(i int) bool { return l.runs[i].first+l.runs[i].n > d })
	return l.runs[i]
}

// runsFrom returns the index of the first run that ends after guest
// cluster g.
func (l *layout) runsFrom(g int64) int {
	return sort.Search(len(l.runs), func(i int) bool { return l.runs[i].guest+l.runs[i].n > g })
}

// addClusters adds guest clusters g … g+n-1 to runs (ascending g), merging
// them with the last run when they touch or overlap it.
func addClusters(runs []run, g, n int64) []run {
	if k := len(runs) - 1; k >= 0 && runs[k].guest+runs[k].n >= g {
		runs[k].n = max(runs[k].n, g+n-runs[k].guest)
		return runs
	}
	return append(runs, run{guest: g, n: n})
}

func ceilDiv(a, b int64) int64 { return (a + b - 1) / b }
