package ext4

import (
	"os"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

func TestDbg(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(dir+"/f", []byte("x"), 0o644)
	tr := tree.New()
	tr.Put(&tree.Entry{Path: "f", Type: tree.Regular, Mode: 0o644, Size: 1, Xattrs: map[string]string{"user.big": strings.Repeat("v", 3000), "user.b": "", "trusted.t": "t"}})
	tr.Put(&tree.Entry{Path: "d", Type: tree.BlockDevice, Mode: 0o644, Major: 259, Minor: 65535})
	root, _ := os.OpenRoot(dir)
	im, err := New(root, tr, Options{SizeBytes: 64 << 20, Now: 1700000000})
	if err != nil {
		t.Fatal(err)
	}
	im.WriteFile("/tmp/x4/dbg.img")
}
