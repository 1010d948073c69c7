package ext4

import (
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// FuzzLayout lays out random trees grown from the fuzzer's bytes (names of
// any bytes but '/' and NUL, every entry type, hard links, xattrs in the
// inode and in blocks, times over the whole range, sparse files) and
// requires e2fsck -fn to find nothing wrong with them.
func FuzzLayout(f *testing.F) {
	for _, seed := range []string{"", "a", "slipway", "many entries please", "\x00\xff\x10"} {
		f.Add([]byte(seed), uint16(40))
	}
	f.Add([]byte("wide"), uint16(299))
	f.Fuzz(layoutOnce)
}

func layoutOnce(t *testing.T, data []byte, entries uint16) {
	{
		h := fnv.New64a()
		h.Write(data)
		r := rand.New(rand.NewPCG(h.Sum64(), uint64(len(data))))
		fx := newFixture(t)
		randomTree(fx, r, int(entries%300))
		opts := testOptions()
		opts.NoChecksums = r.IntN(4) == 0
		im, err := New(openRoot(fx), fx.Tree, opts)
		if err != nil {
			t.Fatalf("a tree of %d entries: %v", fx.Tree.Len(), err)
		}
		defer im.Close()
		image := filepath.Join(t.TempDir(), "fuzz.img")
		if err := im.WriteMetadata(image); err != nil {
			t.Fatal(err)
		}
		fsck(t, image)
	}
}

// randomTree adds n random entries under random directories of f.
func randomTree(f *fixture, r *rand.Rand, n int) {
	dirs := []string{"."}
	var files, specials []string
	for i := range n {
		parent := dirs[r.IntN(len(dirs))]
		p := path.Join(parent, randomName(r, i))
		e := &tree.Entry{Path: p, Mode: uint32(r.IntN(0o10000)), UID: r.Uint32(), GID: r.Uint32(),
			ModTime: MinTime + r.Int64N(MaxTime-MinTime+1)}
		switch k := r.IntN(10); {
		case k < 3:
			e.Type = tree.Dir
			must(f.T, os.Mkdir(filepath.Join(f.Root, p), 0o700))
			dirs = append(dirs, p)
		case k < 6:
			e.Type, e.Size = tree.Regular, randomFile(f, r, p)
			files = append(files, p)
		case k < 7:
			e.Type, e.Link = tree.Symlink, strings.Repeat("t", 1+r.IntN(200))
			if r.IntN(20) == 0 {
				e.Link = strings.Repeat("long/", 800)
			}
		case k < 8:
			e.Type, e.Major, e.Minor = tree.CharDevice+tree.Type(r.IntN(2)), uint32(r.IntN(4096)), uint32(r.IntN(1<<20))
			specials = append(specials, p)
		case k < 9:
			e.Type = tree.FIFO
			specials = append(specials, p)
		default:
			targets := append(files, specials...)
			if len(targets) == 0 {
				continue
			}
			e = &tree.Entry{Path: p, Type: tree.Hardlink, Link: targets[r.IntN(len(targets))]}
			if target, _ := f.Tree.Get(e.Link); target.Type == tree.Regular {
				must(f.T, os.Link(filepath.Join(f.Root, e.Link), filepath.Join(f.Root, p)))
			}
		}
		if e.Type != tree.Hardlink {
			e.Xattrs = randomXattrs(r)
		}
		f.Tree.Put(e)
	}
}

// randomName is unique among siblings (the index) and otherwise any
// bytes but '/' and NUL, up to 255 of them.
func randomName(r *rand.Rand, i int) string {
	b := []byte(fmt.Sprintf("%d.", i))
	for range r.IntN(255 - len(b) + 1) {
		c := byte(1 + r.IntN(255))
		if c == '/' {
			c = '_'
		}
		b = append(b, c)
	}
	return string(b)
}

// randomFile writes a file of up to 100 KiB, some with holes, and returns
// its size.
func randomFile(f *fixture, r *rand.Rand, p string) int64 {
	w, err := os.Create(filepath.Join(f.Root, p))
	must(f.T, err)
	defer w.Close()
	size := r.Int64N(100 << 10)
	for off := int64(0); off < size; off += 64 << 10 {
		if r.IntN(3) > 0 {
			_, err := w.WriteAt(randomBytes(int(min(4096, size-off)), r.Uint64()), off)
			must(f.T, err)
		}
	}
	must(f.T, w.Truncate(size))
	return size
}

func randomXattrs(r *rand.Rand) map[string]string {
	if r.IntN(3) > 0 {
		return nil
	}
	m := map[string]string{}
	for i := range r.IntN(6) {
		ns := []string{"user.", "trusted.", "security."}[r.IntN(3)]
		m[fmt.Sprintf("%s%d-%s", ns, i, strings.Repeat("n", r.IntN(40)))] = strings.Repeat("v", r.IntN(700))
	}
	if r.IntN(5) == 0 {
		m["system.posix_acl_access"] = aclXattr([3]uint32{aclUserObj, 6, 0}, [3]uint32{aclGroup, 4, r.Uint32()},
			[3]uint32{aclGroupObj, 4, 0}, [3]uint32{aclMask, 4, 0}, [3]uint32{aclOther, 0, 0})
	}
	return m
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
