package flatten

import (
	"sort"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// inode is the metadata shared by every name of a file: hard links point
// at the same inode, as they do on disk.
type inode struct {
	typ          tree.Type // never tree.Hardlink
	mode         uint32
	uid, gid     uint32
	size         int64
	link         string // symlink target
	major, minor uint32
	xattrs       map[string]string
	mtime        int64
	nlink        int
}

// onDisk says whether the inode exists in the destination directory:
// device nodes and FIFOs live only in the tree.
func (i *inode) onDisk() bool {
	return i.typ == tree.Regular || i.typ == tree.Dir || i.typ == tree.Symlink
}

// node is one name in the model of the flattened filesystem. The model is
// checked before any disk operation, so the disk never holds anything the
// model does not know, and removals cost only the removed subtree.
type node struct {
	path   string // tree.Clean form
	name   string
	parent *node
	ino    *inode
	kids   map[string]*node // directories only
	// layer is the last layer that wrote this path (or created it as an
	// implicit parent); whiteouts only remove what lower layers wrote.
	layer int
}

func (n *node) isDir() bool { return n.ino.typ == tree.Dir }

func newRoot() *node {
	return &node{path: ".", ino: &inode{typ: tree.Dir, mode: 0o755, nlink: 1}, kids: map[string]*node{}}
}

func childPath(dir *node, name string) string {
	if dir.path == "." {
		return name
	}
	return dir.path + "/" + name
}

// add links a new name for ino under dir.
func (dir *node) add(name string, ino *inode, layer int) *node {
	n := &node{path: childPath(dir, name), name: name, parent: dir, ino: ino, layer: layer}
	if ino.typ == tree.Dir {
		n.kids = map[string]*node{}
	}
	ino.nlink++
	dir.kids[name] = n
	return n
}

// detach removes n and its subtree from the model.
func (n *node) detach() {
	delete(n.parent.kids, n.name)
	n.unlinkAll()
}

func (n *node) unlinkAll() {
	n.ino.nlink--
	for _, k := range n.kids {
		k.unlinkAll()
	}
}

// sortedKids returns the children by name, which walked depth first gives
// the order of tree.Entries.
func (n *node) sortedKids() []*node {
	out := make([]*node, 0, len(n.kids))
	for _, k := range n.kids {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

// walk visits the subtree depth first, parents before children, in
// tree.Entries order. It stops at the first error.
func (n *node) walk(fn func(*node) error) error {
	if err := fn(n); err != nil {
		return err
	}
	for _, k := range n.sortedKids() {
		if err := k.walk(fn); err != nil {
			return err
		}
	}
	return nil
}

// entry renders n for the tree; primary is the first name of a hard-linked
// inode, or "" when n is that first name.
func (n *node) entry(primary string) *tree.Entry {
	i := n.ino
	e := &tree.Entry{
		Path: n.path, Type: i.typ, Mode: i.mode, UID: i.uid, GID: i.gid,
		Size: i.size, Link: i.link, Major: i.major, Minor: i.minor,
		ModTime: i.mtime,
	}
	if len(i.xattrs) > 0 {
		e.Xattrs = make(map[string]string, len(i.xattrs))
		for k, v := range i.xattrs {
			e.Xattrs[k] = v
		}
	}
	if primary != "" {
		e.Type, e.Link = tree.Hardlink, primary
	}
	return e
}

// toTree renders the model. The first name of a hard-linked inode in
// tree.Entries order carries its type; the others are tree.Hardlink
// entries pointing at it, with the same metadata.
func (root *node) toTree() *tree.Tree {
	t := tree.New()
	primary := map[*inode]string{}
	_ = root.walk(func(n *node) error {
		p := ""
		if n.ino.nlink > 1 {
			if first, ok := primary[n.ino]; ok {
				p = first
			} else {
				primary[n.ino] = n.path
			}
		}
		t.Put(n.entry(p))
		return nil
	})
	return t
}

// splitPath splits a clean relative path into its components.
func splitPath(p string) []string {
	if p == "." {
		return nil
	}
	return strings.Split(p, "/")
}
