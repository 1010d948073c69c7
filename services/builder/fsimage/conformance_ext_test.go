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
	if _, err := b.build(ctx, t, f.root, f.tree, image, Options{Filesystem: b.fs}); err != nil {
		t.Fatal(err)
	}
	check(t, b.fs, image)
	got := readBack(ctx, t, image, b.fs)
	for _, d := range Diff(f.tree, got, b.fs) {
		t.Error(d)
	}
	hashed := 0
	for _, e := range f.tree.Entries() {
		if e.Type != tree.Regular || e.Size == 0 || strings.HasPrefix(e.Path, "wide/") {
			continue // the wide directory's files are many and alike
		}
		h, err := ContentHash(ctx, image, b.fs, e.Path)
		if err != nil {
			t.Fatal(err)
		}
		if want := hashFile(t, filepath.Join(f.root, e.Path)); h != want {
			t.Errorf("%s: content hash %s, want %s", e.Path, h, want)
		}
		hashed++
	}
	t.Logf("%d entries, %d contents compared", f.tree.Len(), hashed)
}

// deepDirs nests 60 directories, a file at the bottom.
func deepDirs(f *fixture) {
	p := "deep"
	for i := range 60 {
		f.dir(p, 0o755, uint32(i), 0)
		p += fmt.Sprintf("/level-%02d", i)
	}
	f.dir(p, 0o700, 0, 0)
	f.file(p+"/bottom", []byte("the bottom\n"), 0o644, 0, 0)
}

// wideDir puts 5000 entries in one directory: many blocks.
func wideDir(f *fixture) {
	f.dir("wide", 0o755, 0, 0)
	for i := range 5000 {
		p := fmt.Sprintf("wide/an-entry-with-a-name-of-some-length-%05d", i)
		if i%10 == 0 {
			f.dir(p, 0o755, 0, 0)
		} else {
			f.file(p, []byte{byte(i)}, 0o644, 0, 0)
		}
	}
}

// bigFiles holds a 300 MiB file allocated on the host (zeros, through
// fallocate), which spans groups and needs more extents than an inode
// holds, and a 300 MiB sparse one with a few data runs.
func bigFiles(f *fixture) {
	f.dir("big", 0o755, 0, 0)
	dense := filepath.Join(f.root, "big/dense")
	fd, err := unix.Open(dense, unix.O_CREAT|unix.O_WRONLY, 0o600)
	if err != nil {
		f.t.Fatal(err)
	}
	err = unix.Fallocate(fd, 0, 0, 300<<20)
	unix.Close(fd)
	if err != nil {
		f.t.Skipf("fallocate on the test directory: %v", err)
	}
	f.put(&tree.Entry{Path: "big/dense", Type: tree.Regular, Mode: 0o644, Size: 300 << 20})
	sparse := filepath.Join(f.root, "big/sparse")
	w, err := os.Create(sparse)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := range 12 {
		if _, err := w.WriteAt(randomBytes(1<<20+100, uint64(i)), int64(i)*25<<20+int64(i)*4096); err != nil {
			f.t.Fatal(err)
		}
	}
	if err := w.Truncate(300<<20 + 5); err != nil {
		f.t.Fatal(err)
	}
	w.Close()
	f.put(&tree.Entry{Path: "big/sparse", Type: tree.Regular, Mode: 0o600, Size: 300<<20 + 5})
}

// assorted holds what a distribution's tree may: links of every kind,
// long symlinks, set-id bits, xattrs in the inode and in a block, large
// ids, times before 1970 and after 2038, unicode and 255-byte names.
func assorted(f *fixture) {
	for _, d := range []string{"bin", "dev", "run", "names"} {
		f.dir(d, 0o755, 0, 0)
	}
	f.file("bin/su", []byte("su"), 0o4755, 0, 0)
	f.file("bin/crontab", []byte("crontab"), 0o2755, 0, 102)
	f.dir("run/lock", 0o1777, 0, 0)
	f.hardlink("bin/su-again", "bin/su")
	f.special("dev/console", tree.CharDevice, 0o600, 5, 1)
	f.special("dev/big-numbers", tree.BlockDevice, 0o660, 259, 65535) // debugfs mknod takes up to 65535
	f.special("run/pipe", tree.FIFO, 0o644, 0, 0)
	f.put(&tree.Entry{Path: "dev/console-link", Type: tree.Hardlink, Link: "dev/console"})
	f.put(&tree.Entry{Path: "run/pipe-link", Type: tree.Hardlink, Link: "run/pipe"})
	f.put(&tree.Entry{Path: "run/pipe-link2", Type: tree.Hardlink, Link: "run/pipe"})
	f.symlink("bin/long", strings.Repeat("a/", 2047)+"z")
	f.symlink("bin/fast", strings.Repeat("b", 59))
	f.symlink("bin/slow", strings.Repeat("c", 60))
	small := f.file("bin/small-xattrs", []byte("x"), 0o755, 0, 0)
	small.Xattrs = map[string]string{"user.a": "1", "security.capability": capability}
	large := f.file("bin/large-xattrs", []byte("y"), 0o755, 0, 0)
	large.Xattrs = map[string]string{"user.big": strings.Repeat("v", 3000), "trusted.t": "t", "user.b": ""}
	f.dir("names/dir-with-xattrs", 0o755, 0, 0)
	d, _ := f.tree.Get("names/dir-with-xattrs")
	d.Xattrs = map[string]string{"trusted.overlay.opaque": "y"}
	f.file("bin/ids", []byte("ids"), 0o600, 70000, 4000000000)
	f.file("bin/old", []byte("old"), 0o600, 0, 0).ModTime = -1000000000   // 1938
	f.file("bin/new", []byte("new"), 0o600, 0, 0).ModTime = 8000000000    // 2223
	f.file("bin/epoch", []byte("epoch"), 0o600, 0, 0).ModTime = 1<<31 + 5 // just past 2038
	f.file("names/Grüße-日本語-🙂", []byte("unicode"), 0o644, 0, 0)
	f.file("names/"+strings.Repeat("n", 255), []byte("long name"), 0o644, 0, 0)
	f.dir("names/"+strings.Repeat("d", 255), 0o755, 0, 0)
}
