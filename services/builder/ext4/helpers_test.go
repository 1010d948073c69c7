package ext4

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// fixture is a directory of file contents and the tree describing it, as
// the flattener makes them.
type fixture struct {
	t    testing.TB
	base string
	tree *tree.Tree
}

func newFixture(t testing.TB) *fixture {
	f := &fixture{t: t, base: t.TempDir(), tree: tree.New()}
	root, _ := f.tree.Get(".")
	root.ModTime = 1700000000
	return f
}

func (f *fixture) put(e *tree.Entry) *tree.Entry {
	if e.ModTime == 0 {
		e.ModTime = 1700000000 + int64(f.tree.Len())
	}
	f.tree.Put(e)
	return e
}

func (f *fixture) dir(p string, mode uint32) *tree.Entry {
	if err := os.MkdirAll(filepath.Join(f.base, p), 0o700); err != nil {
		f.t.Fatal(err)
	}
	return f.put(&tree.Entry{Path: p, Type: tree.Dir, Mode: mode})
}

func (f *fixture) file(p string, content []byte, mode uint32) *tree.Entry {
	if err := os.WriteFile(filepath.Join(f.base, p), content, 0o600); err != nil {
		f.t.Fatal(err)
	}
	return f.put(&tree.Entry{Path: p, Type: tree.Regular, Mode: mode, Size: int64(len(content))})
}

func (f *fixture) symlink(p, target string) *tree.Entry {
	return f.put(&tree.Entry{Path: p, Type: tree.Symlink, Mode: 0o777, Link: target, Size: int64(len(target))})
}

func (f *fixture) link(p, target string) {
	f.put(&tree.Entry{Path: p, Type: tree.Hardlink, Link: target})
}

// root opens the fixture's directory; the test closes it.
func (f *fixture) root() *os.Root {
	r, err := os.OpenRoot(f.base)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { r.Close() })
	return r
}

// testOptions are fixed options: a 64 MiB filesystem made at a fixed time.
func testOptions() Options {
	return Options{SizeBytes: 64 << 20, Inodes: 2048, Now: 1700000000, UUID: [16]byte{0xde, 0xad, 0xbe, 0xef, 1}, Label: "test"}
}

func (f *fixture) image(opts Options) *Image {
	im, err := New(f.root(), f.tree, opts)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { im.Close() })
	return im
}

// fsck runs e2fsck -fn on an image file and fails the test on any
// complaint.
func fsck(t testing.TB, image string) {
	t.Helper()
	if out, err := exec.Command("e2fsck", "-fn", image).CombinedOutput(); err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", filepath.Base(image), err, out)
	}
}

// debugfs runs one read-only debugfs request and returns its output.
func debugfs(t testing.TB, image, request string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", request, image).Output()
	if err != nil {
		t.Fatalf("debugfs %s: %v", request, err)
	}
	return string(out)
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// richTree has one of each kind of entry.
func richTree(t testing.TB) *fixture {
	f := newFixture(t)
	for _, d := range []string{"etc", "bin", "dev", "var", "var/lib"} {
		f.dir(d, 0o755)
	}
	f.dir("tmp", 0o1777)
	f.file("etc/hostname", []byte("slipway\n"), 0o644).Xattrs = map[string]string{"user.comment": "name"}
	f.file("etc/empty", nil, 0o644)
	su := f.file("bin/su", randomBytes(70000, 1), 0o4755)
	su.UID, su.GID = 100000, 200000
	f.file("bin/big-xattr", []byte("x"), 0o755).Xattrs = map[string]string{"user.big": strings.Repeat("x", 2000)}
	f.link("bin/su2", "bin/su")
	f.symlink("bin/sh", "busybox")
	f.symlink("bin/long", strings.Repeat("long/", 100))
	f.put(&tree.Entry{Path: "dev/null", Type: tree.CharDevice, Mode: 0o666, Major: 1, Minor: 3})
	f.put(&tree.Entry{Path: "dev/wide", Type: tree.BlockDevice, Mode: 0o660, Major: 4000, Minor: 1000000})
	f.put(&tree.Entry{Path: "dev/fifo", Type: tree.FIFO, Mode: 0o600})
	f.link("dev/null2", "dev/null")
	f.link("dev/fifo2", "dev/fifo")
	lib, _ := f.tree.Get("var/lib")
	lib.Xattrs = map[string]string{"system.posix_acl_access": aclXattr(
		[3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUser, 7, 1000}, [3]uint32{aclGroupObj, 5, 0},
		[3]uint32{aclMask, 7, 0}, [3]uint32{aclOther, 5, 0})}
	f.file("var/lib/old", []byte("old"), 0o600).ModTime = -2000000000
	f.file("var/lib/future", []byte("future"), 0o600).ModTime = 9000000000
	return f
}
