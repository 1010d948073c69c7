// Package treetest makes (directory, tree) pairs for the tests of the
// filesystem builders, as the flattener makes them: contents on disk with
// restrictive modes, no device nodes or fifos, real hard links and
// symlinks; the real metadata in the tree.
package treetest

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/services/builder/tree"
)

// Fixture is a directory of contents and the tree describing it.
type Fixture struct {
	T    testing.TB
	Root string // the directory
	Tree *tree.Tree
}

// New makes an empty fixture in a test's temporary directory.
func New(t testing.TB) *Fixture {
	f := &Fixture{T: t, Root: t.TempDir(), Tree: tree.New()}
	if err := os.Chmod(f.Root, 0o700); err != nil {
		t.Fatal(err)
	}
	root, _ := f.Tree.Get(".")
	root.ModTime = 1700000000
	return f
}

// Put adds e to the tree only, with an mtime if it has none.
func (f *Fixture) Put(e *tree.Entry) *tree.Entry {
	if e.ModTime == 0 {
		e.ModTime = 1700000000 + int64(f.Tree.Len())
	}
	f.Tree.Put(e)
	return e
}

// Dir adds a directory.
func (f *Fixture) Dir(p string, mode, uid, gid uint32) *tree.Entry {
	if err := os.MkdirAll(filepath.Join(f.Root, p), 0o700); err != nil {
		f.T.Fatal(err)
	}
	return f.Put(&tree.Entry{Path: p, Type: tree.Dir, Mode: mode, UID: uid, GID: gid})
}

// File adds a regular file holding content.
func (f *Fixture) File(p string, content []byte, mode, uid, gid uint32) *tree.Entry {
	if err := os.WriteFile(filepath.Join(f.Root, p), content, 0o600); err != nil {
		f.T.Fatal(err)
	}
	return f.Put(&tree.Entry{Path: p, Type: tree.Regular, Mode: mode, UID: uid, GID: gid, Size: int64(len(content))})
}

// Symlink adds a symbolic link.
func (f *Fixture) Symlink(p, target string) *tree.Entry {
	if err := os.Symlink(target, filepath.Join(f.Root, p)); err != nil {
		f.T.Fatal(err)
	}
	return f.Put(&tree.Entry{Path: p, Type: tree.Symlink, Mode: 0o777, Link: target, Size: int64(len(target))})
}

// Hardlink adds a hard link to a regular file.
func (f *Fixture) Hardlink(p, target string) {
	if err := os.Link(filepath.Join(f.Root, target), filepath.Join(f.Root, p)); err != nil {
		f.T.Fatal(err)
	}
	f.Put(&tree.Entry{Path: p, Type: tree.Hardlink, Link: target})
}

// Special records a device node or fifo in the tree only, as the
// flattener does.
func (f *Fixture) Special(p string, typ tree.Type, mode, major, minor uint32) *tree.Entry {
	return f.Put(&tree.Entry{Path: p, Type: typ, Mode: mode, Major: major, Minor: minor})
}

// RandomBytes returns n pseudo-random bytes, the same for the same seed.
func RandomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}
