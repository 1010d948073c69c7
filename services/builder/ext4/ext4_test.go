package ext4

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// TestE2fsckClean checks the whole image and the metadata-only file, with
// and without metadata_csum, and that the metadata-only file is what
// WriteMetadata promises: small, and the whole image but for file data.
func TestE2fsckClean(t *testing.T) {
	for _, noCsum := range []bool{false, true} {
		f := richTree(t)
		opts := testOptions()
		opts.NoChecksums = noCsum
		im := layOut(f, opts)
		dir := t.TempDir()
		whole, meta := filepath.Join(dir, "whole.img"), filepath.Join(dir, "meta.img")
		if err := im.WriteFile(whole); err != nil {
			t.Fatal(err)
		}
		if err := im.WriteMetadata(meta); err != nil {
			t.Fatal(err)
		}
		fsck(t, whole)
		fsck(t, meta)
		var st syscall.Stat_t
		if err := syscall.Stat(meta, &st); err != nil {
			t.Fatal(err)
		}
		if st.Size != im.Size() || st.Blocks*512 > 2<<20 {
			t.Errorf("metadata file: %d bytes, %d allocated; want %d and under 2 MiB", st.Size, st.Blocks*512, im.Size())
		}
		if out := debugfs(t, whole, "cat /bin/su"); out != string(randomBytes(70000, 1)) {
			t.Errorf("bin/su reads back as %d other bytes", len(out))
		}
		if got := debugfs(t, whole, "stat /dev/wide"); !strings.Contains(got, "Device major/minor number: 4000:1000000") {
			t.Errorf("dev/wide: %s", got)
		}
	}
}

// TestSameInputSameImage: a given UUID and time make the image
// reproducible.
func TestSameInputSameImage(t *testing.T) {
	f := richTree(t)
	a, b := layOut(f, testOptions()), layOut(f, testOptions())
	if ha, hb := hashImage(t, a), hashImage(t, b); ha != hb {
		t.Fatalf("two layouts of one tree differ")
	}
	opts := testOptions()
	opts.UUID[0]++
	if hashImage(t, a) == hashImage(t, layOut(f, opts)) {
		t.Fatalf("another UUID made the same image")
	}
}

func hashImage(t *testing.T, im *Image) [32]byte {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(im, 0, im.Size())); err != nil {
		t.Fatal(err)
	}
	return [32]byte(h.Sum(nil))
}

// TestDataRanges: the ranges are sorted, disjoint and block-aligned, and
// every byte outside them reads as zero; the journal and unused inode
// tables are not in them.
func TestDataRanges(t *testing.T) {
	f := richTree(t)
	im := layOut(f, testOptions())
	raw := make([]byte, im.Size())
	if _, err := im.ReadAt(raw, 0); err != nil {
		t.Fatal(err)
	}
	var end, total int64
	for _, r := range im.DataRanges() {
		if r.Off%BlockSize != 0 || r.Len%BlockSize != 0 || r.Len <= 0 || r.Off < end {
			t.Fatalf("range %+v after %d", r, end)
		}
		if !allZero(raw[end:r.Off]) {
			t.Fatalf("non-zero bytes between %d and %d", end, r.Off)
		}
		end, total = r.Off+r.Len, total+r.Len
	}
	if !allZero(raw[end:]) {
		t.Fatalf("non-zero bytes after %d", end)
	}
	// 16 MiB of journal and most of a 2048-inode table are zeros.
	if total > 1<<20 {
		t.Errorf("%d bytes in the data ranges of a tree of %d entries", total, f.Tree.Len())
	}
}

func allZero(b []byte) bool { return len(bytes.Trim(b, "\x00")) == 0 }

// TestConcurrentReads reads the image in odd-sized pieces from several
// goroutines and compares with one sequential read.
func TestConcurrentReads(t *testing.T) {
	f := richTree(t)
	im := layOut(f, testOptions())
	want := make([]byte, im.Size())
	if _, err := im.ReadAt(want, 0); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 12345+w*1000)
			for off := int64(w) * 777; off < im.Size(); off += int64(len(buf)) * 3 {
				n, err := im.ReadAt(buf, off)
				if err != nil && err != io.EOF {
					errs <- err
					return
				}
				if !bytes.Equal(buf[:n], want[off:off+int64(n)]) {
					errs <- errors.New("a concurrent read differs")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// TestChangedFiles: a file that shrank or grew after the layout fails
// the read of its data instead of reading as zeros or as other bytes.
func TestChangedFiles(t *testing.T) {
	for _, size := range []int64{10000, 70001} {
		f := newFixture(t)
		f.File("a", randomBytes(70000, 2), 0o644, 0, 0)
		im := layOut(f, testOptions())
		if err := os.Truncate(filepath.Join(f.Root, "a"), size); err != nil {
			t.Fatal(err)
		}
		err := im.WriteFile(filepath.Join(t.TempDir(), "x.img"))
		if err == nil || !strings.Contains(err.Error(), `"a" holds`) {
			t.Errorf("file resized to %d: %v", size, err)
		}
	}
	// The file shrinks while it is open: the read past its new end fails.
	f := newFixture(t)
	f.File("a", randomBytes(70000, 2), 0o644, 0, 0)
	im := layOut(f, testOptions())
	p := make([]byte, BlockSize)
	var dataAt int64 = -1
	for _, pc := range im.pieces {
		if pc.kind == pieceFile {
			dataAt = pc.start * BlockSize
		}
	}
	if _, err := im.ReadAt(p, dataAt); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(filepath.Join(f.Root, "a"), 100); err != nil {
		t.Fatal(err)
	}
	if _, err := im.ReadAt(p, dataAt+8*BlockSize); err == nil || !strings.Contains(err.Error(), "shrank") {
		t.Fatalf("read past the shrunk end: %v", err)
	}
}

// TestRefusals gives New trees the tree package would refuse (New checks
// again) and sizes that cannot hold them.
func TestRefusals(t *testing.T) {
	cases := []struct {
		name, want string
		edit       func(*fixture, *Options)
	}{
		{"NUL in a name", "holds", func(f *fixture, _ *Options) {
			f.Put(&tree.Entry{Path: "a\x00b", Type: tree.FIFO})
		}},
		{"256-byte name", "longer than 255", func(f *fixture, _ *Options) {
			f.Put(&tree.Entry{Path: strings.Repeat("n", 256), Type: tree.FIFO})
		}},
		{"dot-dot", "not a file name", func(f *fixture, _ *Options) {
			f.Dir("d", 0o755, 0, 0)
			f.Put(&tree.Entry{Path: "d/..", Type: tree.FIFO})
		}},
		{"unclean path", "not clean", func(f *fixture, _ *Options) {
			f.Dir("d", 0o755, 0, 0)
			f.Put(&tree.Entry{Path: "d//x", Type: tree.FIFO})
		}},
		{"parent is a file", "parent is not a directory", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0)
			f.Put(&tree.Entry{Path: "f/x", Type: tree.FIFO})
		}},
		{"orphan", "parent is not a directory", func(f *fixture, _ *Options) {
			f.Put(&tree.Entry{Path: "nowhere/x", Type: tree.FIFO})
		}},
		{"hard link to a directory", "not a file in the tree", func(f *fixture, _ *Options) {
			f.Dir("d", 0o755, 0, 0)
			hardlink(f, "l", "d")
		}},
		{"hard link to nothing", "not a file in the tree", func(f *fixture, _ *Options) { hardlink(f, "l", "missing") }},
		{"lost+found a file", "needs it to be a directory", func(f *fixture, _ *Options) { f.File("lost+found", nil, 0o644, 0, 0) }},
		{"xattr namespace", "no namespace", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0).Xattrs = map[string]string{"system.sockprotoname": "x"}
		}},
		{"xattr name byte", "holds the byte", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0).Xattrs = map[string]string{"user.a\nb": "x"}
		}},
		{"xattrs over a block", "more than one", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0).Xattrs = map[string]string{"user.a": strings.Repeat("v", 5000)}
		}},
		{"bad ACL", "not a version 2", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0).Xattrs = map[string]string{"system.posix_acl_access": "junk"}
		}},
		{"mtime", "outside what ext4 stores", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o644, 0, 0).ModTime = MaxTime + 1
		}},
		{"device", "does not fit", func(f *fixture, _ *Options) {
			f.Put(&tree.Entry{Path: "d", Type: tree.CharDevice, Major: 4096})
		}},
		{"mode", "more than permission bits", func(f *fixture, _ *Options) {
			f.File("f", nil, 0o100644, 0, 0)
		}},
		{"symlink NUL", "NUL", func(f *fixture, _ *Options) { f.Put(&tree.Entry{Path: "s", Type: tree.Symlink, Link: "a\x00b"}) }},
		{"symlink length", "longer than 4095", func(f *fixture, _ *Options) {
			f.Put(&tree.Entry{Path: "s", Type: tree.Symlink, Link: strings.Repeat("s", 4096)})
		}},
		{"unaligned size", "multiple of 4096", func(_ *fixture, o *Options) { o.SizeBytes += 512 }},
		{"long label", "longer than 16", func(_ *fixture, o *Options) { o.Label = strings.Repeat("l", 17) }},
		{"too many inodes", "inodes", func(f *fixture, o *Options) {
			o.SizeBytes = 16 << 20
			o.Inodes = 40000
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			opts := testOptions()
			c.edit(f, &opts)
			_, err := New(openRoot(f), f.Tree, opts)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
		})
	}
}

// TestTooSmallSaysHowMuch: the space error carries what the tree needs.
func TestTooSmallSaysHowMuch(t *testing.T) {
	f := newFixture(t)
	f.File("big", randomBytes(20<<20, 3), 0o644, 0, 0)
	opts := testOptions()
	opts.SizeBytes = 16 << 20
	_, err := New(openRoot(f), f.Tree, opts)
	var space *SpaceError
	if !errors.As(err, &space) || space.What != "blocks" || space.Need <= space.Have || space.Need < 20<<20/BlockSize {
		t.Fatalf("error %v, want a SpaceError needing over %d blocks", err, 20<<20/BlockSize)
	}
}

// TestACL stores POSIX ACLs as debugfs's ea_set does: debugfs reads them
// back in the kernel's form, byte for byte.
func TestACL(t *testing.T) {
	acl := aclXattr(
		[3]uint32{aclUserObj, 7, 0}, [3]uint32{aclUser, 5, 1000}, [3]uint32{aclGroupObj, 5, 0},
		[3]uint32{aclGroup, 4, 70000}, [3]uint32{aclMask, 7, 0}, [3]uint32{aclOther, 0, 0})
	f := newFixture(t)
	f.Dir("shared", 0o770, 0, 0).Xattrs = map[string]string{"system.posix_acl_access": acl, "system.posix_acl_default": acl}
	image := filepath.Join(t.TempDir(), "acl.img")
	if err := layOut(f, testOptions()).WriteFile(image); err != nil {
		t.Fatal(err)
	}
	fsck(t, image)
	for _, name := range []string{"system.posix_acl_access", "system.posix_acl_default"} {
		out := filepath.Join(t.TempDir(), "v")
		debugfs(t, image, "ea_get -f "+out+" /shared "+name)
		got, err := os.ReadFile(out)
		if err != nil || string(got) != acl {
			t.Errorf("%s reads back as %x (%v), want %x", name, got, err, acl)
		}
	}
	disk, _ := diskACL([]byte(acl))
	if len(disk) != 4+4*4+2*8 {
		t.Errorf("on-disk ACL of %d bytes, want short entries for the owner, group, mask and other", len(disk))
	}
}

// aclXattr encodes ACL entries (tag, permissions, id) in the kernel's
// xattr form.
func aclXattr(entries ...[3]uint32) string {
	b := le.AppendUint32(nil, aclXattrVersion)
	for _, e := range entries {
		b = le.AppendUint16(b, uint16(e[0]))
		b = le.AppendUint16(b, uint16(e[1]))
		b = le.AppendUint32(b, e[2])
	}
	return string(b)
}

// TestXattrHashes compares the hashes with debugfs's own view: e2fsck
// checks a block's hashes, and an inode's are left 0 as e2fsprogs does.
func TestXattrHashes(t *testing.T) {
	x := xattr{index: 1, name: "big", value: []byte("abcde")}
	// By hand: the name, then the padded value's words.
	var h uint32
	for _, c := range []byte("big") {
		h = h<<5 ^ h>>27 ^ uint32(c)
	}
	for _, w := range []uint32{0x64636261, 0x65} {
		h = h<<16 ^ h>>16 ^ w
	}
	if got := xattrHash(x); got != h {
		t.Fatalf("hash %#x, want %#x", got, h)
	}
}

// TestLastGroupTooSmall: a size leaving a last group too small for its
// metadata drops that group, as mke2fs does.
func TestLastGroupTooSmall(t *testing.T) {
	f := richTree(t)
	opts := testOptions()
	opts.SizeBytes = (blocksPerGroup*16 + 10) * BlockSize
	opts.Inodes = 16 * 8192
	im := layOut(f, opts)
	if im.Size() != blocksPerGroup*16*BlockSize {
		t.Fatalf("size %d, want the 16 whole groups", im.Size())
	}
	image := filepath.Join(t.TempDir(), "x.img")
	if err := im.WriteMetadata(image); err != nil {
		t.Fatal(err)
	}
	fsck(t, image)
}

// TestLargeSparseFilesystem lays a small tree out on 64 GiB (512 groups):
// the groups without inodes or data add no bytes to the data ranges.
func TestLargeSparseFilesystem(t *testing.T) {
	for _, noCsum := range []bool{false, true} {
		f := richTree(t)
		opts := testOptions()
		opts.SizeBytes, opts.Inodes, opts.NoChecksums = 64<<30, 1<<20, noCsum
		im := layOut(f, opts)
		image := filepath.Join(t.TempDir(), "large.img")
		if err := im.WriteMetadata(image); err != nil {
			t.Fatal(err)
		}
		fsck(t, image)
		var total int64
		for _, r := range im.DataRanges() {
			total += r.Len
		}
		t.Logf("checksums %v: %d KiB in the data ranges", !noCsum, total>>10)
		if limit := int64(3 << 20); !noCsum && total > limit {
			t.Errorf("%d bytes in the data ranges of an almost empty filesystem, want under %d", total, limit)
		}
	}
}

// TestManySubdirectories: a directory of more than 65000 subdirectories
// counts 1 link (dir_nlink), as e2fsck expects; one of 64998 counts 65000.
func TestManySubdirectories(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped in -short: 130000 directories take seconds to check")
	}
	f := newFixture(t)
	for _, d := range []struct {
		name    string
		subdirs int
	}{{"full", 64998}, {"over", 65000}} {
		f.Dir(d.name, 0o755, 0, 0)
		for i := range d.subdirs {
			f.Put(&tree.Entry{Path: fmt.Sprintf("%s/%d", d.name, i), Type: tree.Dir, Mode: 0o755})
		}
	}
	opts := testOptions()
	opts.SizeBytes, opts.Inodes = 1<<30, 140000
	im := layOut(f, opts)
	image := filepath.Join(t.TempDir(), "dirs.img")
	if err := im.WriteMetadata(image); err != nil {
		t.Fatal(err)
	}
	fsck(t, image)
	for name, want := range map[string]string{"full": "Links: 65000", "over": "Links: 1 "} {
		if out := debugfs(t, image, "stat /"+name); !strings.Contains(out, want) {
			t.Errorf("%s: %.200s, want %q", name, out, want)
		}
	}
}
