package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
	"github.com/slipway/slipway/services/builder/tree/treetest"
)

// fixture is a directory of file contents and the tree describing it.
type fixture = treetest.Fixture

func newFixture(t testing.TB) *fixture { return treetest.New(t) }

var randomBytes = treetest.RandomBytes

// openRoot opens the fixture's directory; the test closes it.
func openRoot(f *fixture) *os.Root {
	r, err := os.OpenRoot(f.Root)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { r.Close() })
	return r
}

// hardlink names a device node or fifo twice (the tree only).
func hardlink(f *fixture, p, target string) {
	f.Put(&tree.Entry{Path: p, Type: tree.Hardlink, Link: target})
}

// testOptions are fixed options: a 64 MiB filesystem made at a fixed time.
func testOptions() Options {
	return Options{SizeBytes: 64 << 20, Inodes: 2048, Now: 1700000000, UUID: [16]byte{0xde, 0xad, 0xbe, 0xef, 1}, Label: "test"}
}

// layOut lays the fixture out; the test closes the image.
func layOut(f *fixture, opts Options) *Image {
	im, err := New(openRoot(f), f.Tree, opts)
	if err != nil {
		f.T.Fatal(err)
	}
	f.T.Cleanup(func() { im.Close() })
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

// richTree has one of each kind of entry.
func richTree(t testing.TB) *fixture {
	f := newFixture(t)
	for _, d := range []string{"etc", "bin", "dev", "var", "var/lib"} {
		f.Dir(d, 0o755, 0, 0)
	}
	f.Dir("tmp", 0o1777, 0, 0)
	f.File("etc/hostname", []byte("slipway\n"), 0o644, 0, 0).Xattrs = map[string]string{"user.comment": "name"}
	f.File("etc/empty", nil, 0o644, 0, 0)
	su := f.File("bin/su", randomBytes(70000, 1), 0o4755, 0, 0)
	su.UID, su.GID = 100000, 200000
	f.File("bin/big-xattr", []byte("x"), 0o755, 0, 0).Xattrs = map[string]string{"user.big": strings.Repeat("x", 2000)}
	f.Hardlink("bin/su2", "bin/su")
	f.Symlink("bin/sh", "busybox")
	f.Symlink("bin/long", strings.Repeat("long/", 100))
	f.Put(&tree.Entry{Path: "dev/null", Type: tree.CharDevice, Mode: 0o666, Major: 1, Minor: 3})
	f.Put(&tree.Entry{Path: "dev/wide", Type: tree.BlockDevice, Mode: 0o660, Major: 4000, Minor: 1000000})
	f.Put(&tree.Entry{Path: "dev/fifo", Type: tree.FIFO, Mode: 0o600})
	hardlink(f, "dev/null2", "dev/null")
	hardlink(f, "dev/fifo2", "dev/fifo")
	lib, _ := f.Tree.Get("var/lib")
	lib.Xattrs = map[string]string{"system.posix_acl_access": aclXattr(
		[3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUser, 7, 1000}, [3]uint32{aclGroupObj, 5, 0},
		[3]uint32{aclMask, 7, 0}, [3]uint32{aclOther, 5, 0})}
	f.File("var/lib/old", []byte("old"), 0o600, 0, 0).ModTime = -2000000000
	f.File("var/lib/future", []byte("future"), 0o600, 0, 0).ModTime = 9000000000
	return f
}
