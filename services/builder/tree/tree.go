// Package tree describes a flattened container filesystem: every entry's
// path, type, owner, mode, link target, device numbers and extended
// attributes. The layer flattener writes file contents to a plain directory
// as an unprivileged user and records here what a directory on the host
// cannot hold without root (owners, device nodes, setuid bits, xattrs); the
// filesystem builders apply it to the image they make.
package tree

import (
	"fmt"
	"path"
	"sort"
	"strings"
)

// Type is the kind of a filesystem entry.
type Type uint8

// The entry types a container filesystem can hold.
const (
	Regular Type = iota
	Dir
	Symlink
	Hardlink
	CharDevice
	BlockDevice
	FIFO
)

var typeNames = [...]string{"file", "dir", "symlink", "hardlink", "char", "block", "fifo"}

func (t Type) String() string {
	if int(t) < len(typeNames) {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", t)
}

// Entry is one path of the flattened filesystem.
type Entry struct {
	// Path is clean, relative to the root, without a leading slash
	// ("etc/passwd"); the root itself is ".".
	Path string
	Type Type
	// Mode holds the permission bits and the setuid, setgid and sticky
	// bits (07777), never the type bits.
	Mode uint32
	UID  uint32
	GID  uint32
	// Size is the content length of a regular file.
	Size int64
	// Link is a symlink's target as written in the layer, or the path
	// (in the same form as Path) a hard link points to.
	Link string
	// Major and Minor are a device node's numbers.
	Major, Minor uint32
	// Xattrs are extended attributes, such as security.capability.
	Xattrs map[string]string
	// ModTime is the modification time in Unix seconds.
	ModTime int64
}

// Tree is a flattened filesystem: entries by path.
type Tree struct {
	entries map[string]*Entry
}

// New returns an empty tree holding only the root directory.
func New() *Tree {
	t := &Tree{entries: map[string]*Entry{}}
	t.entries["."] = &Entry{Path: ".", Type: Dir, Mode: 0o755}
	return t
}

// Clean turns a layer path ("./usr/bin/", "/etc") into the form Path uses.
func Clean(p string) string {
	p = path.Clean("/" + p)
	if p == "/" {
		return "."
	}
	return strings.TrimPrefix(p, "/")
}

// Put adds or replaces an entry.
func (t *Tree) Put(e *Entry) { t.entries[e.Path] = e }

// Get returns the entry at p (in Clean form).
func (t *Tree) Get(p string) (*Entry, bool) {
	e, ok := t.entries[p]
	return e, ok
}

// Remove deletes p and, when it is a directory, everything below it.
func (t *Tree) Remove(p string) {
	delete(t.entries, p)
	prefix := p + "/"
	if p == "." {
		prefix = ""
	}
	for k := range t.entries {
		if k != "." && strings.HasPrefix(k, prefix) {
			delete(t.entries, k)
		}
	}
}

// Len is the number of entries, the root included.
func (t *Tree) Len() int { return len(t.entries) }

// Entries returns every entry sorted by path, so parents come before their
// children.
func (t *Tree) Entries() []*Entry {
	out := make([]*Entry, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return Less(out[i].Path, out[j].Path) })
	return out
}

// Less is the order of Entries: "." first, then paths component by
// component, so "a/b" comes right after "a" and before "a-b" (as if every
// '/' were a NUL byte).
func Less(a, b string) bool {
	if a == "." || b == "." {
		return a == "." && b != "."
	}
	for i := 0; i < len(a) && i < len(b); i++ {
		ca, cb := a[i], b[i]
		if ca == '/' {
			ca = 0
		}
		if cb == '/' {
			cb = 0
		}
		if ca != cb {
			return ca < cb
		}
	}
	return len(a) < len(b)
}
