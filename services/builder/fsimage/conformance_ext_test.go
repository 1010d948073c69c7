package fsimage

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway/slipway/services/builder/tree"
)

// TestExtConformance builds trees that stress the ext4 format with every
// ext4 builder and compares what the image holds with the tree: a clean
// e2fsck -fn, the metadata read back, the contents of the files.
func TestExtConformance(t *testing.T) {
	cases := []struct {
		name string
		make func(*fixture)
	}{
		{"empty", func(*fixture) {}},
		{"deep", deepDirs},
		{"wide", wideDir},
		{"big-files", bigFiles},
		{"assorted", assorted},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			c.make(f)
			for _, b := range builders("ext4") {
				t.Run(b.name, func(t *testing.T) { conforms(t, b, f) })
			}
		})
	}
}

func conforms(t *testing.T, b imageBuilder, f *fixture) {
	ctx := context.Background()
	image := filepath.Join(t.TempDir(), "disk.img")
	if _, err := b.build(ctx, t, f.Root, f.Tree, image, Options{Filesystem: b.fs}); err != nil {
		t.Fatal(err)
	}
	check(t, b.fs, image)
	got := readBack(ctx, t, image, b.fs)
	for _, d := range Diff(f.Tree, got, b.fs) {
		t.Error(d)
	}
	hashed := 0
	for _, e := range f.Tree.Entries() {
		if e.Type != tree.Regular || e.Size == 0 || strings.HasPrefix(e.Path, "wide/") {
			continue // the wide directory's files are many and alike
		}
		h, err := ContentHash(ctx, image, b.fs, e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if want := hashFile(t, filepath.Join(f.Root, e.Path)); h != want {
			t.Errorf("%s: content hash %s, want %s", e.Path, h, want)
		}
		hashed++
	}
	t.Logf("%d entries, %d contents compared", f.Tree.Len(), hashed)
}

// deepDirs nests 60 directories, a file at the bottom.
func deepDirs(f *fixture) {
	p := "deep"
	for i := range 60 {
		f.Dir(p, 0o755, uint32(i), 0)
		p += fmt.Sprintf("/level-%02d", i)
	}
	f.Dir(p, 0o700, 0, 0)
	f.File(p+"/bottom", []byte("the bottom\n"), 0o644, 0, 0)
}

// wideDir puts 5000 entries in one directory: many blocks.
func wideDir(f *fixture) {
	f.Dir("wide", 0o755, 0, 0)
	for i := range 5000 {
		p := fmt.Sprintf("wide/an-entry-with-a-name-of-some-length-%05d", i)
		if i%10 == 0 {
			f.Dir(p, 0o755, 0, 0)
		} else {
			f.File(p, []byte{byte(i)}, 0o644, 0, 0)
		}
	}
}

// bigFiles holds a 300 MiB file allocated on the host (zeros, through
// fallocate), which spans groups and needs more extents than an inode
// holds, and a 300 MiB sparse one with a few data runs.
func bigFiles(f *fixture) {
	f.Dir("big", 0o755, 0, 0)
	dense := filepath.Join(f.Root, "big/dense")
	fd, err := unix.Open(dense, unix.O_CREAT|unix.O_WRONLY, 0o600)
	if err != nil {
		f.T.Fatal(err)
	}
	err = unix.Fallocate(fd, 0, 0, 300<<20)
	unix.Close(fd)
	if err != nil {
		f.T.Skipf("fallocate on the test directory: %v", err)
	}
	f.Put(&tree.Entry{Path: "big/dense", Type: tree.Regular, Mode: 0o644, Size: 300 << 20})
	sparse := filepath.Join(f.Root, "big/sparse")
	w, err := os.Create(sparse)
	if err != nil {
		f.T.Fatal(err)
	}
	for i := range 12 {
		if _, err := w.WriteAt(randomBytes(1<<20+100, uint64(i)), int64(i)*25<<20+int64(i)*4096); err != nil {
			f.T.Fatal(err)
		}
	}
	if err := w.Truncate(300<<20 + 5); err != nil {
		f.T.Fatal(err)
	}
	w.Close()
	f.Put(&tree.Entry{Path: "big/sparse", Type: tree.Regular, Mode: 0o600, Size: 300<<20 + 5})
}

// assorted holds what a distribution's tree may: links of every kind,
// long symlinks, set-id bits, xattrs in the inode and in a block, large
// ids, times before 1970 and after 2038, unicode and 255-byte names.
func assorted(f *fixture) {
	for _, d := range []string{"bin", "dev", "run", "names"} {
		f.Dir(d, 0o755, 0, 0)
	}
	f.File("bin/su", []byte("su"), 0o4755, 0, 0)
	f.File("bin/crontab", []byte("crontab"), 0o2755, 0, 102)
	f.Dir("run/lock", 0o1777, 0, 0)
	f.Hardlink("bin/su-again", "bin/su")
	f.Special("dev/console", tree.CharDevice, 0o600, 5, 1)
	f.Special("dev/big-numbers", tree.BlockDevice, 0o660, 259, 65535) // debugfs mknod takes up to 65535
	f.Special("run/pipe", tree.FIFO, 0o644, 0, 0)
	f.Put(&tree.Entry{Path: "dev/console-link", Type: tree.Hardlink, Link: "dev/console"})
	f.Put(&tree.Entry{Path: "run/pipe-link", Type: tree.Hardlink, Link: "run/pipe"})
	f.Put(&tree.Entry{Path: "run/pipe-link2", Type: tree.Hardlink, Link: "run/pipe"})
	f.Symlink("bin/long", strings.Repeat("a/", 2047)+"z")
	f.Symlink("bin/fast", strings.Repeat("b", 59))
	f.Symlink("bin/slow", strings.Repeat("c", 60))
	small := f.File("bin/small-xattrs", []byte("x"), 0o755, 0, 0)
	small.Xattrs = map[string]string{"user.a": "1", "security.capability": capability}
	large := f.File("bin/large-xattrs", []byte("y"), 0o755, 0, 0)
	large.Xattrs = map[string]string{"user.big": strings.Repeat("v", 3000), "trusted.t": "t", "user.b": ""}
	f.Dir("names/dir-with-xattrs", 0o755, 0, 0)
	d, _ := f.Tree.Get("names/dir-with-xattrs")
	d.Xattrs = map[string]string{"trusted.overlay.opaque": "y"}
	f.File("bin/ids", []byte("ids"), 0o600, 70000, 4000000000)
	f.File("bin/old", []byte("old"), 0o600, 0, 0).ModTime = -1000000000   // 1938
	f.File("bin/new", []byte("new"), 0o600, 0, 0).ModTime = 8000000000    // 2223
	f.File("bin/epoch", []byte("epoch"), 0o600, 0, 0).ModTime = 1<<31 + 5 // just past 2038
	f.File("names/Grüße-日本語-🙂", []byte("unicode"), 0o644, 0, 0)
	f.File("names/"+strings.Repeat("n", 255), []byte("long name"), 0o644, 0, 0)
	f.Dir("names/"+strings.Repeat("d", 255), 0o755, 0, 0)
}
