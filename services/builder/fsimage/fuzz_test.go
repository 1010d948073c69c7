package fsimage

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/builder/flatten"
	"github.com/slipway/slipway/services/builder/tree"
)

// FuzzBuilderScripts puts random bytes in every field of a layer that
// reaches a builder as text (a file name, a symlink target, an xattr name
// and value, a fifo's name) and writes the debugfs script, the mkfs.xfs
// protofile and the xfs_db commands for it, twice: for the tree the
// flattener makes of the layer, and for a tree holding the raw fields with
// no flattener in front (the encoders must hold alone). Each script is read
// back as its tool reads it, and every command in it must be one the
// builder meant to write; an encoder may refuse, never pass syntax through.
func FuzzBuilderScripts(f *testing.F) {
	seeds := [][4]string{
		{"name", "target", "user.comment", "value"},
		{"with space", "../a b", "security.capability", "\x01\x00\x00\x02"},
		{`q"uote`, `"/x"`, `user.q"q`, `""`},
		{"a\nset_inode_field / uid 0", "x\ndump /etc/shadow /tmp/x", "user.a\ndump \"/payload\" /host/path\nx", "v"},
		{"a\rb", "!sh -c id", "user.a\rb", "\r\n"},
		{"!id", "#comment", "trusted.overlay.opaque", "y"},
		{"$", ":c", "user.a b", strings.Repeat("v", 300)},
		{"caf\xc3\xa9", "\xff\xfe", "system.posix_acl_access", "acl"},
		{"a\x00b", "l\x00", "user.\x00", "\x00"},
		{"x\n- 0 0 0 /etc/shadow", "y\n$", "user.x\nsource /tmp/cmds", "z"},
	}
	for _, s := range seeds {
		f.Add([]byte(s[0]), []byte(s[1]), []byte(s[2]), []byte(s[3]))
	}
	f.Fuzz(func(t *testing.T, name, link, xname, xvalue []byte) {
		if tr, root, ok := flattenFields(t, string(name), string(link), string(xname), string(xvalue)); ok {
			checkScripts(t, root, tr)
		}
		root := t.TempDir()
		checkScripts(t, root, rawTree(string(name), string(link), string(xname), string(xvalue)))
	})
}

// flattenFields writes one layer holding the fields and flattens it; ok is
// false when tar cannot write them or the flattener refuses them.
func flattenFields(t *testing.T, name, link, xname, xvalue string) (*tree.Tree, string, bool) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdrs := []*tar.Header{
		{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755},
		{Name: "d/" + name, Typeflag: tar.TypeReg, Mode: 0o644, Size: 1,
			PAXRecords: map[string]string{"SCHILY.xattr." + xname: xvalue}},
		{Name: "d/" + name + ".l", Typeflag: tar.TypeSymlink, Linkname: link},
		{Name: "d/" + name + ".p", Typeflag: tar.TypeFifo, Mode: 0o600},
	}
	for _, h := range hdrs {
		h.Format = tar.FormatPAX
		if tw.WriteHeader(h) != nil {
			return nil, "", false
		}
		if h.Size == 1 {
			if _, err := tw.Write([]byte("x")); err != nil {
				return nil, "", false
			}
		}
	}
	if tw.Close() != nil {
		return nil, "", false
	}
	root := filepath.Join(t.TempDir(), "root")
	tr, err := flatten.Flatten(context.Background(), []flatten.Layer{fuzzLayer(buf.Bytes())}, root,
		flatten.Policy{MaxBytes: 1 << 20, MaxEntries: 100})
	if err != nil {
		var fe *flatten.Error
		if !errors.As(err, &fe) {
			t.Fatalf("Flatten failed without naming the layer: %v", err)
		}
		return nil, "", false
	}
	return tr, root, true
}

type fuzzLayer []byte

func (fuzzLayer) Digest() string { return "sha256:fuzz" }
func (l fuzzLayer) Uncompressed() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(l)), nil
}

// rawTree holds the fields as they are: no flattener checked them. Slashes
// are the tree's own separators, so they are replaced in the name.
func rawTree(name, link, xname, xvalue string) *tree.Tree {
	name = strings.ReplaceAll(name, "/", "_")
	if name == "" || name == "." || name == ".." {
		name = "_" + name
	}
	tr := tree.New()
	tr.Put(&tree.Entry{Path: "d", Type: tree.Dir, Mode: 0o755})
	tr.Put(&tree.Entry{Path: "d/" + name, Type: tree.Regular, Mode: 0o644, Size: 1,
		Xattrs: map[string]string{xname: xvalue}})
	tr.Put(&tree.Entry{Path: "d/" + name + ".l", Type: tree.Symlink, Mode: 0o777, Link: link})
	tr.Put(&tree.Entry{Path: "d/" + name + ".p", Type: tree.FIFO, Mode: 0o600})
	tr.Put(&tree.Entry{Path: "d/" + name + ".h", Type: tree.Hardlink, Link: "d/" + name + ".p"})
	return tr
}

// checkScripts writes every script the builders would write for tr and
// reads each back; a refusal must come from an encoder.
func checkScripts(t *testing.T, root string, tr *tree.Tree) {
	t.Helper()
	work := t.TempDir()
	for _, s := range []struct {
		what, name string
		write      func(root string, tr *tree.Tree, path, work string) error
		check      func(text string) error
	}{
		{"debugfs script", "script", writeExtScript, func(text string) error { return checkExtScript(text, tr, work) }},
		{"protofile", "proto", writeProto, func(text string) error { return checkProto(text, tr, root, work) }},
	} {
		path := filepath.Join(work, s.name)
		if err := s.write(root, tr, path, work); err != nil {
			mustBeRefusal(t, s.what, err)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.check(string(b)); err != nil {
			t.Fatalf("%s:\n%s\n%v", s.what, b, err)
		}
	}
	for _, e := range tr.Entries() {
		cmds, err := xfsFixes(7, e, &tree.Entry{})
		if err != nil {
			if !strings.Contains(err.Error(), "namespace") {
				mustBeRefusal(t, "xfs_db commands", err)
			}
			continue
		}
		if err := checkXFSDBCommands(cmds, e); err != nil {
			t.Fatalf("xfs_db commands for %q: %v", e.Path, err)
		}
	}
}

func mustBeRefusal(t *testing.T, what string, err error) {
	t.Helper()
	var ee *EncodeError
	if !errors.As(err, &ee) {
		t.Fatalf("%s: failed without an encoder's refusal: %v", what, err)
	}
}
