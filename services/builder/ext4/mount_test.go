package ext4

import (
	"bytes"
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
	f := richTree(t)
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
		t.Errorf("%s: %v", e.Path, err)
		return
	}
	want := uint32(typeBits[e.Type]) | e.Mode
	if st.Mode != want || st.Uid != e.UID || st.Gid != e.GID || st.Mtim.Sec != e.ModTime {
		t.Errorf("%s: mode %o %d:%d mtime %d, want %o %d:%d %d", e.Path, st.Mode, st.Uid, st.Gid, st.Mtim.Sec, want, e.UID, e.GID, e.ModTime)
	}
	switch e.Type {
	case tree.Regular:
		got, err := os.ReadFile(p)
		wantBytes, _ := os.ReadFile(filepath.Join(f.Root, e.Path))
		if err != nil || !bytes.Equal(got, wantBytes) || st.Nlink != uint64(links) {
			t.Errorf("%s: %d bytes (%v), %d links; want %d bytes, %d links", e.Path, len(got), err, st.Nlink, len(wantBytes), links)
		}
	case tree.Symlink:
		if got, err := os.Readlink(p); err != nil || got != e.Link {
			t.Errorf("%s: target %.40q (%v), want %.40q", e.Path, got, err, e.Link)
		}
	case tree.CharDevice, tree.BlockDevice:
		if unix.Major(st.Rdev) != e.Major || unix.Minor(st.Rdev) != e.Minor {
			t.Errorf("%s: device %d:%d, want %d:%d", e.Path, unix.Major(st.Rdev), unix.Minor(st.Rdev), e.Major, e.Minor)
		}
	}
	for name, value := range e.Xattrs {
		buf := make([]byte, 65536)
		n, err := unix.Lgetxattr(p, name, buf)
		if strings.HasPrefix(name, "system.posix_acl_") && err == nil {
			// The kernel gives the entries without a qualifier the id
			// ACL_UNDEFINED_ID; ext4 does not store one.
			buf, value = []byte(shortACLIDs(string(buf[:n]))), shortACLIDs(value)
			n = len(buf)
		}
		if err != nil || string(buf[:n]) != value {
			t.Errorf("%s: xattr %s = %.40q (%v), want %.40q", e.Path, name, buf[:max(n, 0)], err, value)
		}
	}
	if e.Type == tree.Regular || e.Type == tree.Dir {
		buf := make([]byte, 65536)
		n, _ := unix.Llistxattr(p, buf)
		got := strings.FieldsFunc(string(buf[:max(n, 0)]), func(r rune) bool { return r == 0 })
		if len(got) != len(e.Xattrs) {
			t.Errorf("%s: xattrs %q, want %d", e.Path, got, len(e.Xattrs))
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
