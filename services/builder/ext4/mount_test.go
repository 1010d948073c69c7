package ext4

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/slipway/slipway/services/builder/tree"
)

// TestKernelMount mounts the image read-only through a loop device, where
// the machine lets it, and compares what the kernel shows with the tree:
// types, modes, owners, sizes, mtimes, link counts, device numbers,
// symlink targets, xattrs and contents.
func TestKernelMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a loop device needs root")
	}
	t.Run("rich", func(t *testing.T) { mountAndCompare(t, richTree(t)) })
	t.Run("random", func(t *testing.T) {
		f := newFixture(t)
		randomTree(f, rand.New(rand.NewPCG(7, 7)), 400)
		// A sparse file of 6 data runs: an extent tree of depth 1.
		w, err := os.Create(filepath.Join(f.Root, "sparse"))
		must(t, err)
		for i := range 6 {
			_, err := w.WriteAt(randomBytes(10000, uint64(i)), int64(i)<<20)
			must(t, err)
		}
		must(t, w.Close())
		f.Put(&tree.Entry{Path: "sparse", Type: tree.Regular, Mode: 0o644, Size: 5<<20 + 10000})
		mountAndCompare(t, f)
	})
}

func mountAndCompare(t *testing.T, f *fixture) {
	image := filepath.Join(t.TempDir(), "disk.img")
	if err := layOut(f, testOptions()).WriteFile(image); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop,ro", image, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipped: mount -o loop,ro does not work here: %v: %s", err, bytes.TrimSpace(out))
	}
	defer func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount: %v: %s", err, out)
		}
	}()
	names := map[string]int{} // inode targets by path: link counts
	for _, e := range f.Tree.Entries() {
		if e.Type == tree.Hardlink {
			names[e.Link]++
		}
	}
	for _, e := range f.Tree.Entries() {
		if e.Type == tree.Hardlink {
			e, _ = f.Tree.Get(e.Link)
		}
		compareMounted(t, f, mnt, e, names[e.Path]+1)
	}
}

func compareMounted(t *testing.T, f *fixture, mnt string, e *tree.Entry, links int) {
	p := filepath.Join(mnt, e.Path)
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		t.Errorf("%q: %v", e.Path, err)
		return
	}
	want := uint32(typeBits[e.Type]) | e.Mode
	if st.Mode != want || st.Uid != e.UID || st.Gid != e.GID || st.Mtim.Sec != e.ModTime {
		t.Errorf("%q: mode %o %d:%d mtime %d, want %o %d:%d %d", e.Path, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, want, e.UID, e.GID, e.ModTime)
	}
	switch e.Type {
	case tree.Regular:
		got, err := os.ReadFile(p)
		wantBytes, _ := os.ReadFile(filepath.Join(f.Root, e.Path))
		if err != nil || !bytes.Equal(got, wantBytes) || st.Nlink != uint64(links) {
			t.Errorf("%q: %d bytes (%v), %d links; want %d bytes, %d links", e.Path, len(got), err, st.Nlink, len(wantBytes), links)
		}
	case tree.Symlink:
		if got, err := os.Readlink(p); err != nil || got != e.Link {
			t.Errorf("%q: target %.40q (%v), want %.40q", e.Path, got, err, e.Link)
		}
	case tree.CharDevice, tree.BlockDevice:
		if unix.Major(st.Rdev) != e.Major || unix.Minor(st.Rdev) != e.Minor {
			t.Errorf("%q: device %d:%d, want %d:%d", e.Path, unix.Major(st.Rdev), unix.Minor(st.Rdev), e.Major, e.Minor)
		}
	}
	for name, value := range e.Xattrs {
		if !strings.HasPrefix(name, "security.") && !strings.HasPrefix(name, "trusted.") &&
			e.Type != tree.Regular && e.Type != tree.Dir {
			continue // the kernel shows user xattrs and ACLs of files and directories only
		}
		buf := make([]byte, 65536)
		n, err := unix.Lgetxattr(p, name, buf)
		if strings.HasPrefix(name, "system.posix_acl_") && err == nil {
			// The kernel gives the entries without a qualifier the id
			// ACL_UNDEFINED_ID; ext4 does not store one.
			buf, value = []byte(shortACLIDs(string(buf[:n]))), shortACLIDs(value)
			n = len(buf)
		}
		if err != nil || string(buf[:n]) != value {
			t.Errorf("%q: xattr %s = %.40q (%v), want %.40q", e.Path, name, buf[:max(n, 0)], err, value)
		}
	}
	if e.Type == tree.Regular || e.Type == tree.Dir {
		buf := make([]byte, 65536)
		n, _ := unix.Llistxattr(p, buf)
		got := strings.FieldsFunc(string(buf[:max(n, 0)]), func(r rune) bool { return r == 0 })
		if len(got) != len(e.Xattrs) {
			t.Errorf("%q: xattrs %q, want %d", e.Path, got, len(e.Xattrs))
		}
	}
}

// shortACLIDs zeroes the ids of an ACL's entries that have none.
func shortACLIDs(v string) string {
	b := []byte(v)
	for e := b[4:]; len(e) >= 8; e = e[8:] {
		if tag := le.Uint16(e); tag != aclUser && tag != aclGroup {
			le.PutUint32(e[4:], 0)
		}
	}
	return string(b)
}

// TestKernelWrites mounts the image read-write, where the machine lets
// it, and has the kernel use it as a guest would: write a large file,
// grow a directory past a block (the kernel then indexes it), remove files
// and set xattrs, through the journal. e2fsck -fn must find the result
// clean: the bitmaps, counters and checksums the kernel started from were
// right.
func TestKernelWrites(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a loop device needs root")
	}
	f := richTree(t)
	image := filepath.Join(t.TempDir(), "disk.img")
	if err := layOut(f, testOptions()).WriteFile(image); err != nil {
		t.Fatal(err)
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", image, mnt).CombinedOutput(); err != nil {
		t.Skipf("skipped: mount -o loop does not work here: %v: %s", err, bytes.TrimSpace(out))
	}
	mounted := true
	defer func() {
		if mounted {
			exec.Command("umount", mnt).Run()
		}
	}()
	must(t, os.WriteFile(filepath.Join(mnt, "var/big"), randomBytes(20<<20, 9), 0o644))
	must(t, os.Mkdir(filepath.Join(mnt, "var/many"), 0o755))
	for i := range 300 {
		must(t, os.WriteFile(filepath.Join(mnt, "var/many", strings.Repeat("x", 40)+fmt.Sprint(i)), []byte("y"), 0o644))
	}
	must(t, os.Remove(filepath.Join(mnt, "bin/su")))
	must(t, os.Remove(filepath.Join(mnt, "etc/hostname")))
	must(t, unix.Setxattr(filepath.Join(mnt, "etc/empty"), "user.added", []byte(strings.Repeat("z", 500)), 0))
	if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, out)
	}
	mounted = false
	fsck(t, image)
}
