package qcow2

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// memDisk is a Disk in memory: the bytes of its data ranges, zeros
// elsewhere. It counts the bytes it is asked to read.
type memDisk struct {
	size   int64
	ranges []Range
	data   [][]byte // each range's bytes
	read   atomic.Int64
}

func (d *memDisk) Size() int64         { return d.size }
func (d *memDisk) DataRanges() []Range { return d.ranges }

// ReadAt says io.EOF with the last bytes of the disk, as io.ReaderAt
// allows, so the image must accept it.
func (d *memDisk) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("memDisk: negative offset")
	}
	d.read.Add(int64(len(p)))
	n := max(0, min(int64(len(p)), d.size-off))
	clear(p[:n])
	i := sort.Search(len(d.ranges), func(i int) bool { return d.ranges[i].Off+d.ranges[i].Len > off })
	for ; i < len(d.ranges) && d.ranges[i].Off < off+n; i++ {
		r := d.ranges[i]
		from := max(off, r.Off)
		copy(p[from-off:n], d.data[i][from-r.Off:])
	}
	if off+int64(len(p)) >= d.size {
		return int(n), io.EOF
	}
	return int(n), nil
}

// diskOf is a memDisk holding the bytes of a test's raw file of size with
// extents written. Its data ranges are the extents, merged where they
// overlap, each then cut into two adjacent halves: ranges that start and
// end anywhere in a cluster, several to a cluster.
func diskOf(t testing.TB, raw string, size int64, extents []extent) *memDisk {
	t.Helper()
	f, err := os.Open(raw)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := &memDisk{size: size}
	for _, r := range mergeExtents(extents) {
		for _, half := range []Range{{r.Off, r.Len / 2}, {r.Off + r.Len/2, r.Len - r.Len/2}} {
			if half.Len == 0 {
				continue
			}
			b := make([]byte, half.Len)
			if _, err := f.ReadAt(b, half.Off); err != nil {
				t.Fatal(err)
			}
			d.ranges, d.data = append(d.ranges, half), append(d.data, b)
		}
	}
	return d
}

// mergeExtents returns the byte ranges extents cover, sorted, with the
// ones that overlap merged (adjacent ones are left apart).
func mergeExtents(extents []extent) []Range {
	ex := slices.Clone(extents)
	slices.SortFunc(ex, func(a, b extent) int { return int(a.off - b.off) })
	var rs []Range
	for _, e := range ex {
		if k := len(rs) - 1; k >= 0 && e.off < rs[k].Off+rs[k].Len {
			rs[k].Len = max(rs[k].Len, e.off+e.n-rs[k].Off)
			continue
		}
		rs = append(rs, Range{e.off, e.n})
	}
	return rs
}

// checkFromDisk has qemu-img judge the image FromDisk makes of a memDisk
// holding the bytes of raw (of size, with extents written): sound,
// identical to raw, of raw's virtual size. It must store the clusters the
// extents touch if keep, else the ones that are not all zero, and have
// read, to lay them out, nothing if keep, else no more than the ranges.
func checkFromDisk(t testing.TB, raw string, size int64, extents []extent, keep bool) *Image {
	t.Helper()
	d := diskOf(t, raw, size, extents)
	im, err := FromDisk(context.Background(), d, Options{KeepZeroClusters: keep})
	if err != nil {
		t.Fatal(err)
	}
	var inRanges int64
	for _, r := range d.ranges {
		inRanges += r.Len
	}
	if read := d.read.Load(); keep && read != 0 || read > inRanges {
		t.Fatalf("keep-zeros=%v: laying out read %d bytes of the disk, whose ranges hold %d", keep, read, inRanges)
	}
	qcow := streamImage(t, im, filepath.Join(filepath.Dir(raw), "disk-from.qcow2"))
	vsize := ceilDiv(size, 512) * 512
	checkWithQemu(t, qcow, raw, vsize)
	want := nonZeroClusters(t, raw)
	if keep {
		want = touchedClusters(extents)
	}
	if im.DataClusters() != want || im.VirtualSize() != vsize {
		t.Fatalf("keep-zeros=%v: data clusters %d, virtual size %d; want %d, %d", keep, im.DataClusters(), im.VirtualSize(), want, vsize)
	}
	return im
}

// TestFromDiskRefuses: a Disk whose size or ranges break the contract
// gets an error that says what is wrong, whether or not the ranges are
// to be read.
func TestFromDiskRefuses(t *testing.T) {
	const size = 10 * mib
	for _, c := range []struct {
		name   string
		size   int64
		ranges []Range
		want   string
	}{
		{"negative size", -1, nil, "size -1 is out of range"},
		{"size over the limit", MaxVirtualSize + 1, nil, "out of range"},
		{"unsorted", size, []Range{{2 * c64, 10}, {c64, 10}}, "range 1 (10 bytes at 65536) starts before the end of the one before it (131082)"},
		{"overlapping", size, []Range{{0, 100}, {99, 10}}, "starts before the end of the one before it (100)"},
		{"negative offset", size, []Range{{-1, 10}}, "starts before"},
		{"empty", size, []Range{{0, 10}, {c64, 0}}, "range 1 (0 bytes at 65536) is empty"},
		{"negative length", size, []Range{{c64, -5}}, "is empty"},
		{"past the size", size, []Range{{size - 10, 11}}, "ends past its size (10485760 bytes)"},
		{"starting past the size", size, []Range{{size + 1, 1}}, "ends past its size"},
		{"overflowing", size, []Range{{c64, 1<<63 - 1}}, "ends past its size"},
	} {
		for _, keep := range []bool{false, true} {
			d := &memDisk{size: c.size, ranges: c.ranges, data: make([][]byte, len(c.ranges))}
			im, err := FromDisk(context.Background(), d, Options{KeepZeroClusters: keep})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.HasPrefix(err.Error(), "qcow2: ") {
				t.Errorf("%s, keep-zeros=%v: FromDisk = %v, %v; want an error saying %q", c.name, keep, im, err, c.want)
			}
		}
	}
}

// failingDisk is a memDisk whose reads that reach past failAt fail: with
// err, or, when err is nil, by reading short without an error.
type failingDisk struct {
	*memDisk
	failAt int64
	err    error
}

func (d *failingDisk) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= d.failAt {
		return d.memDisk.ReadAt(p, off)
	}
	n, _ := d.memDisk.ReadAt(p[:max(0, d.failAt-off)], off)
	return n, d.err
}

// TestDiskReadFails: a Disk that fails to read, or reads short, is an
// error from FromDisk when it scans the ranges and from the image's reads
// when it does not; never zeros.
func TestDiskReadFails(t *testing.T) {
	extents := []extent{{0, 3 * mib, false}}
	raw := rawFile(t, t.TempDir(), 4*mib, extents, 11)
	broken := errors.New("the disk broke")
	for _, c := range []struct {
		name     string
		err      error // the disk's
		want     error // the image's
		scanning string
	}{
		{"error", broken, broken, "qcow2: the disk read 65536 of 524288 bytes at 1048576: the disk broke"},
		{"short read", nil, io.ErrUnexpectedEOF, "qcow2: the disk read 65536 of 524288 bytes at 1048576: unexpected EOF"},
		{"early EOF", io.EOF, io.EOF, "qcow2: the disk read 65536 of 524288 bytes at 1048576: EOF"},
	} {
		t.Run(c.name, func(t *testing.T) {
			d := &failingDisk{diskOf(t, raw, 4*mib, extents), mib + c64, c.err}
			if _, err := FromDisk(context.Background(), d, Options{}); err == nil || err.Error() != c.scanning {
				t.Errorf("FromDisk scanning: %v; want %q", err, c.scanning)
			}
			im, err := FromDisk(context.Background(), d, Options{KeepZeroClusters: true})
			if err != nil {
				t.Fatal(err)
			}
			_, err = im.WriteTo(io.Discard)
			if !errors.Is(err, c.want) || !strings.HasPrefix(err.Error(), "qcow2: the disk read ") {
				t.Errorf("WriteTo: %v; want the disk read's error, %v", err, c.want)
			}
		})
	}
}

// TestFromDiskCanceled: the scan of the ranges stops when the context
// ends.
func TestFromDiskCanceled(t *testing.T) {
	extents := []extent{{0, 4 * mib, false}}
	d := diskOf(t, rawFile(t, t.TempDir(), 4*mib, extents, 12), 4*mib, extents)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := FromDisk(ctx, d, Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("FromDisk with a canceled context: %v", err)
	}
}

// TestFromDiskReadAtConcurrently: readers at random offsets, at the same
// time, each get the bytes of the whole stream (run it with -race).
func TestFromDiskReadAtConcurrently(t *testing.T) {
	c := layoutCases[5]
	raw := rawFile(t, t.TempDir(), c.size, c.extents, 13)
	im := checkFromDisk(t, raw, c.size, c.extents, false)
	whole, err := os.ReadFile(filepath.Join(filepath.Dir(raw), "disk-from.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(14, uint64(g)))
			for range 200 {
				off := rng.Int64N(im.Size())
				p := make([]byte, 1+rng.Int64N(3*c64))
				n, err := im.ReadAt(p, off)
				want := whole[off:min(off+int64(len(p)), int64(len(whole)))]
				if n != len(want) || !bytes.Equal(p[:n], want) || (err == io.EOF) != (n < len(p)) {
					t.Errorf("ReadAt(%d bytes, %d) = %d, %v: differs from the stream", len(p), off, n, err)
					return
				}
			}
		})
	}
	wg.Wait()
}
