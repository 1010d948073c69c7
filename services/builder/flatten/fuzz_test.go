package flatten

import (
	"archive/tar"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// FuzzFlatten applies random tar bytes over a fixed lower layer holding
// symlinks that point outside dst: Flatten must never panic, never write
// outside dst, and on success leave a disk that matches its tree.
func FuzzFlatten(f *testing.F) {
	seeds := [][]te{
		{fileE("../evil", "x", 0o644)},
		{fileE("/abs", "x", 0o644)},
		{fileE("abs/x", "pwned", 0o644)},
		{dirE("rel/sub/", 0o755), fileE("rel/x", "x", 0o644)},
		{symE("up", "../../x"), linkE("l", "../../etc/passwd")},
		{linkE("l2", "d/f"), whE("d/.wh..wh..opq"), fileE("d/g", "g", 0o644)},
		{whE(".wh.d"), fileE("d", "now a file", 0o644), linkE("h2", "h")},
		{devE("null", tar.TypeChar, 0o666, 1, 3), devE("p", tar.TypeFifo, 0o600, 0, 0), fileE("su", "s", 0o4755).xattr("security.capability", capV2)},
		{dirE("./", 0o700), whE(".wh.abs"), symE("abs", "/")},
	}
	for _, s := range seeds {
		f.Add(tarBytes(f, s...))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		sb := newSandbox(t)
		outside := sb.outside(t)
		lower := layerOf(t, symE("abs", outside), symE("rel", "d"), dirE("d/", 0o755),
			fileE("d/f", "f", 0o644), linkE("h", "d/f"))
		got, err := Flatten(context.Background(), []Layer{lower, bytesLayer(data)}, sb.dst,
			Policy{MaxBytes: 1 << 20, MaxEntries: 1000})
		sb.onlyRoot(t, "outside")
		ents, _ := os.ReadDir(outside)
		if len(ents) != 1 || readFile(t, filepath.Join(outside, "keep")) != "k" {
			t.Fatalf("Flatten changed %s", outside)
		}
		if err == nil {
			diskMatchesTree(t, sb.dst, got)
		}
	})
}

// diskMatchesTree checks that dst holds exactly the tree's files,
// directories and symlinks, and nothing for devices and FIFOs.
func diskMatchesTree(t *testing.T, dst string, tr *tree.Tree) {
	t.Helper()
	kind := func(e *tree.Entry) tree.Type {
		for e.Type == tree.Hardlink {
			e, _ = tr.Get(e.Link)
		}
		return e.Type
	}
	onDisk := map[string]bool{}
	for _, e := range tr.Entries() {
		typ := kind(e)
		fi, err := os.Lstat(filepath.Join(dst, e.Path))
		switch {
		case typ != tree.Regular && typ != tree.Dir && typ != tree.Symlink:
			if err == nil {
				t.Errorf("%s (%v) exists on disk", e.Path, typ)
			}
			continue
		case err != nil:
			t.Errorf("%s (%v) is not on disk: %v", e.Path, typ, err)
			continue
		}
		onDisk[e.Path] = true
		want := map[tree.Type]fs.FileMode{tree.Regular: 0, tree.Dir: fs.ModeDir, tree.Symlink: fs.ModeSymlink}[typ]
		if fi.Mode().Type() != want {
			t.Errorf("%s is %v on disk, %v in the tree", e.Path, fi.Mode().Type(), typ)
		}
		if typ == tree.Regular && fi.Size() != e.Size {
			t.Errorf("%s is %d bytes on disk, %d in the tree", e.Path, fi.Size(), e.Size)
		}
	}
	err := filepath.WalkDir(dst, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dst, p)
		if !onDisk[filepath.ToSlash(rel)] {
			t.Errorf("%s is on disk but not in the tree", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
