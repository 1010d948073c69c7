package qcow2

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// extent is a byte range of a test's raw file that is written, with
// random bytes or with zeros (allocated zeros, which mkfs leaves too).
type extent struct {
	off, n int64
	zeros  bool
}

// rawFile writes a sparse raw file of size bytes with extents written and
// the rest holes, and returns its path.
func rawFile(t testing.TB, dir string, size int64, extents []extent, seed uint64) string {
	t.Helper()
	path := filepath.Join(dir, "disk.raw")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	rng := rand.NewChaCha8([32]byte{byte(seed)})
	for _, e := range extents {
		b := make([]byte, e.n)
		if !e.zeros {
			rng.Read(b)
			for i := range b {
				b[i] |= 1 // never zero: every cluster written to is data
			}
		}
		if _, err := f.WriteAt(b, e.off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

// writeImage streams the qcow2 image of raw into a file beside it (see
// streamImage) and returns the image and the file's path.
func writeImage(t testing.TB, raw string, opts Options) (*Image, string) {
	t.Helper()
	im, err := Open(context.Background(), raw, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { im.Close() })
	return im, streamImage(t, im, filepath.Join(filepath.Dir(raw), "disk.qcow2"))
}

// streamImage streams im into a file at out, with holes where the stream
// has whole blocks of zeros (so a large image takes little disk), checks
// that the stream is Size bytes long, and returns out.
func streamImage(t testing.TB, im *Image, out string) string {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := im.WriteTo(&sparseWriter{f: f})
	if err != nil {
		t.Fatal(err)
	}
	if n != im.Size() || n%ClusterSize != 0 {
		t.Fatalf("wrote %d bytes, Size says %d (clusters of %d)", n, im.Size(), ClusterSize)
	}
	if err := f.Truncate(n); err != nil {
		t.Fatal(err)
	}
	return out
}

// sparseWriter writes to f, leaving holes for 4 KiB blocks of zeros.
type sparseWriter struct {
	f   *os.File
	off int64
}

func (w *sparseWriter) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i += 4096 {
		b := p[i:min(i+4096, len(p))]
		if !bytes.Equal(b, zeroCluster[:len(b)]) {
			if _, err := w.f.WriteAt(b, w.off+int64(i)); err != nil {
				return i, err
			}
		}
	}
	w.off += int64(len(p))
	return len(p), nil
}

// checkWithQemu has the real qemu-img judge the image: check finds no
// error or leak, compare finds it identical to raw, info reads the
// virtual size.
func checkWithQemu(t testing.TB, qcow, raw string, virtualSize int64) {
	t.Helper()
	out := testenv.Exec(t, "qemu-img", "check", "-f", "qcow2", qcow)
	if !strings.Contains(out, "No errors were found on the image.") {
		t.Fatalf("qemu-img check: %s", out)
	}
	out = testenv.Exec(t, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", qcow, raw)
	if !strings.Contains(out, "Images are identical.") {
		t.Fatalf("qemu-img compare: %s", out)
	}
	var info struct {
		Format      string `json:"format"`
		VirtualSize int64  `json:"virtual-size"`
	}
	js := testenv.Exec(t, "qemu-img", "info", "--output=json", "-f", "qcow2", qcow)
	if err := json.Unmarshal([]byte(js), &info); err != nil {
		t.Fatalf("qemu-img info: %v\n%s", err, js)
	}
	if info.Format != "qcow2" || info.VirtualSize != virtualSize {
		t.Fatalf("qemu-img info: format %s, virtual size %d; want qcow2, %d", info.Format, info.VirtualSize, virtualSize)
	}
}

// nonZeroClusters counts the clusters of the raw file holding a byte that
// is not zero: what the image must store, no more, no less.
func nonZeroClusters(t testing.TB, raw string) int64 {
	t.Helper()
	if n, ok := nonZeroCounted.Load(raw); ok {
		return n.(int64)
	}
	f, _ := testenv.Open(t, raw)
	var n int64
	buf := make([]byte, 16*ClusterSize)
	for {
		k, err := io.ReadFull(f, buf)
		for b := buf[:k]; len(b) > 0; b = b[min(len(b), ClusterSize):] {
			if c := b[:min(len(b), ClusterSize)]; !bytes.Equal(c, zeroCluster[:len(c)]) {
				n++
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			nonZeroCounted.Store(raw, n)
			return n
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// nonZeroCounted remembers nonZeroClusters' count of each raw file (they
// never change once written): the cases of gigabytes ask twice.
var nonZeroCounted sync.Map

// touchedClusters counts the clusters some extent writes to: what the
// image stores when it keeps allocated zeros.
func touchedClusters(extents []extent) int64 {
	seen := map[int64]bool{}
	for _, e := range extents {
		for c := e.off / ClusterSize; c < ceilDiv(e.off+e.n, ClusterSize); c++ {
			seen[c] = true
		}
	}
	return int64(len(seen))
}

// hasHole says whether a file of size with extents written has a hole:
// a file system block (4 KiB) no extent touches.
func hasHole(extents []extent, size int64) bool {
	written := map[int64]bool{}
	for _, e := range extents {
		for b := e.off / 4096; b < ceilDiv(e.off+e.n, 4096); b++ {
			written[b] = true
		}
	}
	return int64(len(written)) < ceilDiv(size, 4096)
}

const (
	kib = int64(1) << 10
	mib = int64(1) << 20
	gib = int64(1) << 30
	c64 = int64(ClusterSize)
)

// layoutCase is a raw file to turn into an image.
type layoutCase struct {
	name    string
	size    int64
	extents []extent
}

var layoutCases = []layoutCase{
	{"empty file", 0, nil},
	{"all holes", 10 * mib, nil},
	{"fully allocated", 3 * mib, []extent{{0, 3 * mib, false}}},
	{"one byte", 1 * mib, []extent{{123457, 1, false}}},
	{"holes at cluster boundaries", 2 * mib, []extent{{c64, c64, false}, {4 * c64, 2 * c64, false}, {2*mib - c64, c64, false}}},
	{"holes inside clusters", 2 * mib, []extent{{4 * kib, 4 * kib, false}, {c64 - 512, 1024, false}, {5*c64 + 8*kib, 40 * kib, false}}},
	{"tail of a size not a multiple of the cluster", mib + 4608, []extent{{0, 4 * kib, false}, {mib, 4608, false}}},
	{"size not a multiple of 512", 100000, []extent{{99000, 1000, false}}},
	{"no hole, zeros", 2*mib + 4*kib, []extent{{0, 2 * mib, true}, {2 * mib, 4 * kib, false}}},
	{"allocated zeros", 4 * mib, []extent{{0, mib, true}, {mib, 8 * kib, false}, {2 * mib, mib, true}, {3*mib + 100, 10, false}}},
	{"data runs across an L2 table's end", 1 * gib, []extent{{512*mib - 2*c64, 4 * c64, false}, {gib - c64, c64, false}}},
	{"adjacent extents off cluster boundaries", 2 * mib, []extent{{100, c64 - 107, false}, {c64 - 7, 10, false}, {c64 + 3, 2 * c64, true}, {3*c64 + 3, 1, false}, {3*c64 + 4, 5, true}}},
	{"data far apart in 3 GiB", 3 * gib, []extent{{5, 10, false}, {gib + gib/2 + 777, 70 * kib, false}, {2*gib + 3, c64, true}, {3*gib - 10, 10, false}}},
}

func TestLayouts(t *testing.T) {
	for _, c := range layoutCases {
		for _, keep := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keep-zeros=%v", c.name, keep), func(t *testing.T) {
				raw := rawFile(t, t.TempDir(), c.size, c.extents, 1)
				im, qcow := writeImage(t, raw, Options{KeepZeroClusters: keep})
				vsize := ceilDiv(c.size, 512) * 512
				checkWithQemu(t, qcow, raw, vsize)
				want := nonZeroClusters(t, raw)
				if keep && hasHole(c.extents, c.size) {
					want = touchedClusters(c.extents)
				}
				if im.DataClusters() != want || im.VirtualSize() != vsize {
					t.Fatalf("data clusters %d, virtual size %d; want %d, %d", im.DataClusters(), im.VirtualSize(), want, vsize)
				}
				t.Run("FromDisk", func(t *testing.T) { checkFromDisk(t, raw, c.size, c.extents, keep) })
			})
		}
	}
}

// TestLargeSparse has data spread over 3 GiB, the first 2.25 GiB of it in
// every cluster: the image needs 6 L2 tables and, holding more than 32768
// clusters, 2 refcount blocks.
func TestLargeSparse(t *testing.T) {
	size := 3 * gib
	var extents []extent
	for off := int64(0); off < 2*gib+gib/4; off += c64 {
		extents = append(extents, extent{off + off%(60*kib), 1, false})
	}
	extents = append(extents, extent{size - 1, 1, false})
	raw := rawFile(t, t.TempDir(), size, extents, 2)
	im, qcow := writeImage(t, raw, Options{})
	checkWithQemu(t, qcow, raw, size)
	l := im.l
	if len(l.l2s) != 6 || l.rbClusters != 2 || im.DataClusters() != int64(len(extents)) {
		t.Fatalf("%d L2 tables, %d refcount blocks, %d data clusters; want 6, 2, %d", len(l.l2s), l.rbClusters, im.DataClusters(), len(extents))
	}
	t.Run("FromDisk", func(t *testing.T) {
		if l := checkFromDisk(t, raw, size, extents, false).l; len(l.l2s) != 6 || l.rbClusters != 2 {
			t.Fatalf("%d L2 tables, %d refcount blocks; want 6, 2", len(l.l2s), l.rbClusters)
		}
	})
}

// TestRandomLayouts: random extents of data and of zeros in files of
// random sizes, each image judged by qemu-img.
func TestRandomLayouts(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 12 {
		size := rng.Int64N(16 * mib)
		extents := randomExtents(rng, size, rng.IntN(20))
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			raw := rawFile(t, t.TempDir(), size, extents, uint64(i))
			im, qcow := writeImage(t, raw, Options{})
			checkWithQemu(t, qcow, raw, ceilDiv(size, 512)*512)
			if want := nonZeroClusters(t, raw); im.DataClusters() != want {
				t.Fatalf("%d data clusters, want %d", im.DataClusters(), want)
			}
			t.Run("FromDisk", func(t *testing.T) { checkFromDisk(t, raw, size, extents, i%2 == 0) })
		})
	}
}

// randomExtents returns n extents within size, of any length and offset,
// a third of them zeros.
func randomExtents(rng *rand.Rand, size int64, n int) []extent {
	var ex []extent
	for range n {
		if size == 0 {
			break
		}
		off := rng.Int64N(size)
		ex = append(ex, extent{off, 1 + rng.Int64N(min(size-off, 3*c64)), rng.IntN(3) == 0})
	}
	return ex
}

// TestReadAtAnywhere: reading the image at any offset, in pieces of any
// length, gives the bytes of the whole stream.
func TestReadAtAnywhere(t *testing.T) {
	c := layoutCases[5]
	raw := rawFile(t, t.TempDir(), c.size, c.extents, 5)
	im, qcow := writeImage(t, raw, Options{})
	whole, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 500 {
		off := rng.Int64N(im.Size())
		p := make([]byte, 1+rng.Int64N(3*c64))
		n, err := im.ReadAt(p, off)
		want := whole[off:min(off+int64(len(p)), int64(len(whole)))]
		if n != len(want) || !bytes.Equal(p[:n], want) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v: differs from the stream", len(p), off, n, err)
		}
		if (err == io.EOF) != (n < len(p)) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v", len(p), off, n, err)
		}
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ path, want string }{
		{dir, "not a regular file"},
		{filepath.Join(dir, "missing.raw"), "no such file"},
	} {
		if _, err := Open(context.Background(), c.path, Options{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Open(%s) = %v, want an error saying %q", c.path, err, c.want)
		}
	}
	if _, err := newLayout(MaxVirtualSize+512, nil); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Errorf("a virtual size over the L1 table's limit: %v", err)
	}
}

// TestRawShrinks: a raw file cut short while its image is read is an
// error, not zeros.
func TestRawShrinks(t *testing.T) {
	raw := rawFile(t, t.TempDir(), 4*mib, []extent{{0, 4 * mib, false}}, 7)
	im, err := Open(context.Background(), raw, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	if err := os.Truncate(raw, mib); err != nil {
		t.Fatal(err)
	}
	if _, err := im.WriteTo(io.Discard); err == nil || !strings.Contains(err.Error(), "shorter than") {
		t.Fatalf("WriteTo after the raw file shrank: %v", err)
	}
}

// FuzzImage: any raw file of up to 8 MiB with any extents of data and of
// zeros becomes an image qemu-img finds sound and identical, storing
// exactly the clusters that are not all zero; so does a Disk in memory
// with the same bytes, its data ranges the extents (checkFromDisk).
func FuzzImage(f *testing.F) {
	f.Add([]byte{0x80, 0, 0, 0x10, 0, 0, 0x20, 0, 0, 0})
	f.Add([]byte{0xff, 0xff, 0xff, 0, 0, 0, 0xff, 0xff, 0xff, 1, 0x7f, 0xff, 0xff, 0, 0x00, 0x10, 0})
	f.Add([]byte{0x01, 0x00, 0x01, 0x00, 0x00, 0x01, 0x00, 0x00, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, data []byte) {
		size, extents := fuzzLayout(data)
		raw := rawFile(t, t.TempDir(), size, extents, 9)
		im, qcow := writeImage(t, raw, Options{})
		checkWithQemu(t, qcow, raw, ceilDiv(size, 512)*512)
		if want := nonZeroClusters(t, raw); im.DataClusters() != want {
			t.Fatalf("%d data clusters, want %d", im.DataClusters(), want)
		}
		checkFromDisk(t, raw, size, extents, len(data)%2 == 0)
	})
}

// fuzzLayout reads a size (3 bytes, at most 8 MiB) and then extents (3
// bytes of offset and 3 of length, each a fraction of the size, and a
// byte whose low bit asks for zeros) from data.
func fuzzLayout(data []byte) (int64, []extent) {
	u24 := func(b []byte) int64 { return int64(b[0])<<16 | int64(b[1])<<8 | int64(b[2]) }
	if len(data) < 3 {
		return 0, nil
	}
	size := u24(data) * (8 * mib) >> 24
	var ex []extent
	for b := data[3:]; len(b) >= 7 && size > 0 && len(ex) < 64; b = b[7:] {
		off := u24(b) * size >> 24
		n := 1 + u24(b[3:])*(size-off)>>24
		ex = append(ex, extent{off, min(n, size-off), b[6]&1 == 1})
	}
	return size, ex
}
