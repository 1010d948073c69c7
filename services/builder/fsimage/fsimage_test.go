package fsimage

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway/slipway/pkg/qcow2"
	"github.com/slipway/slipway/services/builder/tree"
	"github.com/slipway/slipway/services/builder/tree/treetest"
)

// capability is a security.capability value (VFS_CAP_REVISION_2,
// cap_net_raw permitted and effective), binary bytes.
var capability = string([]byte{0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})

// fixture is a (directory, tree) pair as the flattener makes them.
type fixture = treetest.Fixture

func newFixture(t testing.TB) *fixture { return treetest.New(t) }

var randomBytes = treetest.RandomBytes

// richTree is the test tree: every kind of entry, owners, setuid, sticky,
// xattrs, links. oddNames adds names only ext can hold.
func richTree(t *testing.T, oddNames bool) *fixture {
	f := newFixture(t)
	for _, d := range []string{"etc", "usr", "usr/bin", "usr/share", "usr/share/doc", "home", "data", "dev", "run"} {
		f.Dir(d, 0o755, 0, 0)
	}
	f.Dir("tmp", 0o1777, 0, 0)
	f.Dir("home/user", 0o750, 1000, 1000)
	f.Dir("var", 0o755, 0, 0)
	f.Dir("var/www", 0o2775, 33, 33)
	host := f.File("etc/hostname", []byte("slipway\n"), 0o644, 0, 0)
	host.Xattrs = map[string]string{"user.comment": "the machine's name"}
	f.File("etc/empty", nil, 0o644, 0, 0)
	f.File("usr/bin/sudo", []byte("#!/bin/sh\necho pretend to be root\n"), 0o4755, 0, 0)
	f.File("usr/bin/wall", []byte("wall"), 0o2755, 0, 5)
	ping := f.File("usr/bin/ping", []byte("ping binary"), 0o755, 0, 0)
	ping.Xattrs = map[string]string{"security.capability": capability}
	f.File("home/user/notes.txt", []byte("mine\n"), 0o640, 1000, 1000)
	f.File("var/www/index.html", []byte("<h1>hi</h1>\n"), 0o644, 33, 33)
	// Inside a setgid directory, but owned otherwise: no inheritance.
	f.File("var/www/root-owned", []byte("r"), 0o644, 0, 0)
	f.Dir("var/www/plain", 0o755, 0, 0)
	f.File("data/big", randomBytes(5<<20, 1), 0o600, 1000, 1000)
	f.Symlink("usr/bin/sh", "/usr/bin/busybox")
	f.Symlink("etc/sudo", "../usr/bin/sudo")
	f.Symlink("usr/share/doc/long", strings.Repeat("../", 10)+strings.Repeat("very-long-directory-name/", 4)+"file")
	f.Hardlink("usr/bin/sudoedit", "usr/bin/sudo")
	f.Hardlink("usr/bin/ping6", "usr/bin/ping")
	f.Special("dev/null", tree.CharDevice, 0o666, 1, 3)
	f.Special("dev/sda", tree.BlockDevice, 0o660, 8, 0)
	f.Special("run/initctl", tree.FIFO, 0o600, 0, 0)
	f.Put(&tree.Entry{Path: "dev/null-link", Type: tree.Hardlink, Link: "dev/null"})
	f.File("home/user/big-ids", []byte("ids"), 0o600, 100000, 200000).ModTime = 4102444800 // 2100
	f.File("home/user/old", []byte("old"), 0o600, 1000, 1000).ModTime = 1
	// A label the host put on a file (SELinux would): not in the tree, so
	// not in the image.
	strayXattr = syscall.Setxattr(filepath.Join(f.Root, "etc/hostname"), "user.host-label", []byte("host"), 0) == nil
	if oddNames {
		f.File("etc/with space", []byte("spaced\n"), 0o644, 0, 0)
		f.File(`etc/a"quote`, []byte("quoted\n"), 0o644, 0, 0)
		f.File(`etc/back\slash`, []byte("slashed\n"), 0o644, 0, 0)
		f.File("etc/:colon $", []byte("colon\n"), 0o644, 0, 0)
		f.Dir("etc/dir with space", 0o700, 1000, 1000)
		f.Special("etc/dir with space/fifo \"q\"", tree.FIFO, 0o644, 0, 0)
	}
	return f
}

// strayXattr is whether the host let richTree put an xattr on disk that
// the tree does not hold.
var strayXattr bool

func hashFile(t *testing.T, p string) string {
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func readBack(ctx context.Context, t *testing.T, image, fs string) *tree.Tree {
	var got *tree.Tree
	var err error
	if fs == "xfs" {
		got, err = ReadXFS(ctx, image)
	} else {
		got, err = ReadExt(ctx, image)
	}
	if err != nil {
		t.Fatalf("reading %s image: %v", fs, err)
	}
	return got
}

func check(t *testing.T, fs, image string) {
	t.Helper()
	var cmd *exec.Cmd
	if fs == "xfs" {
		cmd = exec.Command("xfs_repair", "-n", "-f", image)
	} else {
		cmd = exec.Command("e2fsck", "-fn", image)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
}

func TestBuildAndReadBack(t *testing.T) {
	for _, b := range allBuilders() {
		fs := b.fs
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			f := richTree(t, fs != "xfs")
			image := filepath.Join(t.TempDir(), "disk.img")
			res, err := b.build(ctx, t, f.Root, f.Tree, image, Options{Filesystem: fs, Label: "slipway-root"})
			if err != nil {
				t.Fatal(err)
			}
			if info, err := os.Stat(image); err != nil || info.Size() != res.SizeBytes {
				t.Fatalf("image size %v (%v), result says %d", info.Size(), err, res.SizeBytes)
			}
			var want int64
			for _, e := range f.Tree.Entries() {
				want += e.Size * int64(btoi(e.Type == tree.Regular))
			}
			if res.ContentBytes != want {
				t.Errorf("content bytes %d, want %d", res.ContentBytes, want)
			}
			check(t, fs, image)
			got := readBack(ctx, t, image, fs)
			for _, d := range Diff(f.Tree, got, fs) {
				t.Error(d)
			}
			spotChecks(t, fs, got)
			if !strayXattr {
				t.Log("the test directory holds no user xattrs; removal of host xattrs was not exercised")
			}
			for _, e := range f.Tree.Entries() {
				e = resolve(f.Tree, e)
				if e.Type != tree.Regular {
					continue
				}
				h, err := ContentHash(ctx, image, fs, e.Path)
				if err != nil {
					t.Fatal(err)
				}
				if want := hashFile(t, filepath.Join(f.Root, e.Path)); h != want {
					t.Errorf("%s: content hash %s, want %s", e.Path, h, want)
				}
			}
		})
	}
}

// spotChecks asserts the important facts directly, not only through Diff.
func spotChecks(t *testing.T, fs string, got *tree.Tree) {
	t.Helper()
	want := map[string]string{
		"usr/bin/sudo":  "file 04755 0:0",
		"usr/bin/wall":  "file 02755 0:5",
		"tmp":           "dir 01777 0:0",
		"var/www":       "dir 02775 33:33",
		"home/user":     "dir 0750 1000:1000",
		"dev/null":      "char 0666 0:0 1:3",
		"dev/sda":       "block 0660 0:0 8:0",
		"run/initctl":   "fifo 0600 0:0",
		"usr/bin/sh":    "symlink 0777 0:0 -> /usr/bin/busybox",
		"etc/sudo":      "symlink 0777 0:0 -> ../usr/bin/sudo",
		"etc/empty":     "file 0644 0:0 size 0",
		"data/big":      "file 0600 1000:1000 size 5242880",
		"etc/hostname":  "file 0644 0:0 size 8",
		"usr/bin/ping6": "hardlink -> usr/bin/ping",
	}
	for p, w := range want {
		e, ok := got.Get(p)
		if !ok {
			t.Errorf("%s: missing", p)
			continue
		}
		if s := describe(e); s != w {
			t.Errorf("%s: %s, want %s", p, s, w)
		}
	}
	if ping, _ := got.Get("usr/bin/ping"); ping == nil || ping.Xattrs["security.capability"] != capability {
		t.Errorf("usr/bin/ping: security.capability lost: %q", ping.Xattrs)
	}
	if host, _ := got.Get("etc/hostname"); host == nil || host.Xattrs["user.comment"] != "the machine's name" {
		t.Errorf("etc/hostname: user.comment lost")
	}
}

func describe(e *tree.Entry) string {
	s := fmt.Sprintf("%s 0%o %d:%d", e.Type, e.Mode, e.UID, e.GID)
	switch e.Type {
	case tree.Hardlink:
		return "hardlink -> " + e.Link
	case tree.Symlink:
		s += " -> " + e.Link
	case tree.CharDevice, tree.BlockDevice:
		s += fmt.Sprintf(" %d:%d", e.Major, e.Minor)
	case tree.Regular:
		if strings.Contains(e.Path, "empty") || strings.Contains(e.Path, "big") || strings.Contains(e.Path, "hostname") || strings.Contains(e.Path, "ping") {
			s += fmt.Sprintf(" size %d", e.Size)
		}
	}
	return s
}

func TestSizeTooSmall(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.File("big", randomBytes(40<<20, 2), 0o644, 0, 0)
	for _, b := range builders("ext4", "xfs") {
		fs := b.fs
		need := Required(f.Tree, fs)
		_, err := b.build(ctx, t, f.Root, f.Tree, filepath.Join(t.TempDir(), "x.img"), Options{Filesystem: fs, SizeMiB: 20})
		want := fmt.Sprintf("size=20 MiB is too small for this image: its content needs at least %d MiB", need)
		if err == nil || err.Error() != want || !errors.Is(err, ErrTooSmall) {
			t.Fatalf("%s: error %v, want %q", b.name, err, want)
		}
		// The estimate is a real size: an image of exactly that size builds.
		image := filepath.Join(t.TempDir(), "x.img")
		if _, err := b.build(ctx, t, f.Root, f.Tree, image, Options{Filesystem: fs, SizeMiB: need}); err != nil {
			t.Fatalf("%s at the required %d MiB: %v", b.name, need, err)
		}
		if fs == "ext4" && (need < 41 || need > 60) {
			t.Errorf("ext4 needs %d MiB for 40 MiB of content, want 41..60", need)
		}
	}
}

// TestMkfsOutOfSpace makes mke2fs itself run out of space (bypassing the
// estimate) and expects the same kind of message.
func TestMkfsOutOfSpace(t *testing.T) {
	f := newFixture(t)
	f.File("big", randomBytes(12<<20, 3), 0o644, 0, 0)
	image := filepath.Join(t.TempDir(), "x.img")
	if err := createSparse(image, 8*MiB); err != nil {
		t.Fatal(err)
	}
	err := buildExt(context.Background(), f.Root, f.Tree, image, 8, Options{Filesystem: "ext4"})
	var tooSmall *TooSmallError
	if !errors.As(err, &tooSmall) || tooSmall.Tool != "mkfs.ext4" {
		t.Fatalf("error %v, want mkfs.ext4 running out of space", err)
	}
	tooSmall.SizeMiB, tooSmall.NeedMiB = 8, Required(f.Tree, "ext4")
	if msg := err.Error(); !strings.HasPrefix(msg, "size=8 MiB is too small for this image: its content needs more than 8 MiB") {
		t.Fatalf("message %q", msg)
	}
}

func TestAutoSize(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.Dir("lib", 0o755, 0, 0)
	for i := range 50 {
		f.File(fmt.Sprintf("lib/part%02d", i), randomBytes(1<<20, uint64(10+i)), 0o644, 0, 0)
	}
	for _, b := range builders("ext4", "xfs") {
		fs := b.fs
		image := filepath.Join(t.TempDir(), "auto.img")
		res, err := b.build(ctx, t, f.Root, f.Tree, image, Options{Filesystem: fs})
		if err != nil {
			t.Fatalf("%s: %v", b.name, err)
		}
		if res.ContentBytes != 50<<20 {
			t.Errorf("%s: content %d bytes, want %d", b.name, res.ContentBytes, 50<<20)
		}
		if need := Required(f.Tree, fs) * MiB; res.SizeBytes < need || (fs == "ext4" && res.SizeBytes < 50<<20*5/4) {
			t.Errorf("%s: auto size %d bytes, below the content plus 25%% or the required %d", b.name, res.SizeBytes, need)
		}
		check(t, fs, image)
		got := readBack(ctx, t, image, fs)
		for _, d := range Diff(f.Tree, got, fs) {
			t.Errorf("%s: %s", b.name, d)
		}
		h, err := ContentHash(ctx, image, fs, "lib/part49")
		if err != nil || h != hashFile(t, filepath.Join(f.Root, "lib/part49")) {
			t.Errorf("%s: lib/part49 hash %s, %v", b.name, h, err)
		}
	}
}

func TestRefusals(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.File("ok", []byte("x"), 0o644, 0, 0)
	out := filepath.Join(t.TempDir(), "x.img")
	if _, err := Build(ctx, f.Root, f.Tree, out, Options{Filesystem: "btrfs"}); err == nil ||
		err.Error() != `filesystem "btrfs" is not supported (ext2, ext3, ext4, xfs)` {
		t.Errorf("btrfs: %v", err)
	}
	f.File("with space", []byte("x"), 0o644, 0, 0)
	if _, err := Build(ctx, f.Root, f.Tree, out, Options{Filesystem: "xfs"}); err == nil || !strings.Contains(err.Error(), `"with space"`) {
		t.Errorf("xfs with a space in a name: %v", err)
	}
	f.Put(&tree.Entry{Path: "new\nline", Type: tree.FIFO, Mode: 0o644})
	for _, b := range builders("ext4") {
		if _, err := b.build(ctx, t, f.Root, f.Tree, out, Options{Filesystem: "ext4"}); err == nil || !strings.Contains(err.Error(), "control character 0x0a") {
			t.Errorf("%s: newline in a name: %v", b.name, err)
		}
	}
	ok := newFixture(t)
	ok.File("ok", []byte("x"), 0o644, 0, 0)
	if _, err := Build(ctx, ok.Root, ok.Tree, out, Options{Filesystem: "xfs", UUID: "01234567-89ab-cdef-0123-456789abcdef,sparse=0"}); err == nil ||
		!strings.Contains(err.Error(), "is not of the form") {
		t.Errorf("UUID with a suboption: %v", err)
	}
	for _, b := range builders("ext4") {
		if _, err := b.build(ctx, t, ok.Root, ok.Tree, out, Options{Filesystem: "ext4", Label: "a\nb"}); err == nil ||
			!strings.Contains(err.Error(), "control character 0x0a") {
			t.Errorf("%s: label with a newline: %v", b.name, err)
		}
	}
	g := newFixture(t)
	g.File("a", []byte("x"), 0o644, 0, 0)
	if err := os.WriteFile(filepath.Join(g.Root, "stray"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, b := range builders("ext4") {
		if _, err := b.build(ctx, t, g.Root, g.Tree, out, Options{Filesystem: "ext4"}); err == nil || !strings.Contains(err.Error(), `"stray" is in the directory but not in the tree`) {
			t.Errorf("%s: stray file: %v", b.name, err)
		}
	}
}

func TestUnquoteXFSDB(t *testing.T) {
	in := `"\000\001\a\b\c\d\e\f\g\016\"x\\\377"`
	want := []byte{0, 1, 7, 8, 9, 10, 11, 12, 13, 14, '"', 'x', '\\', 0xff}
	if got := unquoteXFSDB(in); !bytes.Equal([]byte(got), want) {
		t.Fatalf("%q, want %q", got, want)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestRequiredIsEnough builds many small files and directories (where
// inodes and directory blocks, not data, dominate) at exactly Required.
func TestRequiredIsEnough(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	for d := range 30 {
		f.Dir(fmt.Sprintf("d%02d", d), 0o755, 0, 0)
		for i := range 100 {
			f.File(fmt.Sprintf("d%02d/a-rather-long-file-name-%04d", d, i), []byte("x"), 0o644, 0, 0)
		}
	}
	for _, b := range allBuilders() {
		need := Required(f.Tree, b.fs)
		if _, err := b.build(ctx, t, f.Root, f.Tree, filepath.Join(t.TempDir(), "r.img"), Options{Filesystem: b.fs, SizeMiB: need}); err != nil {
			t.Errorf("%s at the required %d MiB: %v", b.name, need, err)
		}
	}
}

// TestExtJournalStaysSparse: mke2fs leaves an ext4 journal (16 MiB on a
// 512 MiB filesystem) to the image file's holes instead of writing its
// zeros, and the filesystem is sound. (mke2fs 1.47 still writes an ext3
// journal, which has no extents; the qcow2 writer leaves its zeros out.)
func TestExtJournalStaysSparse(t *testing.T) {
	f := newFixture(t)
	f.File("hello", []byte("hello\n"), 0o644, 0, 0)
	image := filepath.Join(t.TempDir(), "disk.img")
	if _, err := Build(context.Background(), f.Root, f.Tree, image, Options{Filesystem: "ext4", SizeMiB: 512}); err != nil {
		t.Fatal(err)
	}
	check(t, "ext4", image)
	var st syscall.Stat_t
	if err := syscall.Stat(image, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated >= 16<<20 {
		t.Fatalf("the image has %d MiB allocated: its journal was written", allocated>>20)
	}
}

// TestExtLeavesNoZeroClusters: an ext2 or ext4 image holds no allocated
// cluster that is all zeros, not even for files of zeros (mke2fs -d makes
// their zero blocks holes) or for the ext4 journal, so the builder's qcow2
// writer need not read the data to find such clusters (it does for ext3
// and xfs).
func TestExtLeavesNoZeroClusters(t *testing.T) {
	for _, fs := range []string{"ext2", "ext4"} {
		t.Run(fs, func(t *testing.T) {
			f := richTree(t, true)
			f.File("data/zeros", make([]byte, 2<<20), 0o644, 0, 0)
			f.File("data/holey", append(append(randomBytes(100<<10, 2), make([]byte, 1<<20)...), randomBytes(100<<10, 3)...), 0o644, 0, 0)
			image := filepath.Join(t.TempDir(), "disk.img")
			if _, err := Build(context.Background(), f.Root, f.Tree, image, Options{Filesystem: fs, SizeMiB: 512}); err != nil {
				t.Fatal(err)
			}
			var clusters [2]int64
			for i, keep := range []bool{false, true} {
				im, err := qcow2.Open(context.Background(), image, qcow2.Options{KeepZeroClusters: keep})
				if err != nil {
					t.Fatal(err)
				}
				clusters[i] = im.DataClusters()
				im.Close()
			}
			if clusters[0] != clusters[1] {
				t.Fatalf("%d clusters hold data, %d of them all zeros", clusters[1], clusters[1]-clusters[0])
			}
		})
	}
}
