package ext4

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

func TestSmoke(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
	os.WriteFile(filepath.Join(dir, "etc/hostname"), []byte("hello\n"), 0o644)
	tr := tree.New()
	tr.Put(&tree.Entry{Path: "etc", Type: tree.Dir, Mode: 0o755, ModTime: 1700000000})
	tr.Put(&tree.Entry{Path: "etc/hostname", Type: tree.Regular, Mode: 0o644, Size: 6, ModTime: 1700000000, Xattrs: map[string]string{"user.a": "b"}})
	tr.Put(&tree.Entry{Path: "etc/link", Type: tree.Symlink, Mode: 0o777, Link: "hostname"})
	tr.Put(&tree.Entry{Path: "dev", Type: tree.Dir, Mode: 0o755})
	tr.Put(&tree.Entry{Path: "dev/null", Type: tree.CharDevice, Mode: 0o666, Major: 1, Minor: 3})
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	noCsum := os.Getenv("NOCSUM") != ""
	im, err := New(root, tr, Options{SizeBytes: 64 << 20, Inodes: 4096, Now: 1700000000, UUID: [16]byte{1, 2, 3}, NoChecksums: noCsum})
	if err != nil {
		t.Fatal(err)
	}
	defer im.Close()
	out := "/tmp/x4/smoke.img"
	if err := im.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	b, err := exec.Command("e2fsck", "-fn", out).CombinedOutput()
	t.Logf("%s", b)
	if err != nil {
		t.Fatal(err)
	}
}
