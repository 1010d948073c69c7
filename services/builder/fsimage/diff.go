package fsimage

import (
	"fmt"
	"maps"
	"slices"
	"sort"

	"github.com/slipway/slipway/services/builder/tree"
)

// Diff lists how got, a tree read back from an image of filesystem fs,
// differs from want, the tree it was built from: entry by entry, types,
// modes, owners, sizes, symlink targets, device numbers, xattrs, hard link
// groups and mtimes. ext's lost+found is ignored unless want has one (xfs
// images have none). An empty result means they match.
func Diff(want, got *tree.Tree, fs string) []string {
	var d []string
	wantGroups, gotGroups := linkGroups(want), linkGroups(got)
	for _, w := range want.Entries() {
		g, ok := got.Get(w.Path)
		if !ok {
			d = append(d, fmt.Sprintf("%q: missing", w.Path))
			continue
		}
		if wantGroups[w.Path] != gotGroups[w.Path] {
			d = append(d, fmt.Sprintf("%q: hard-linked with %q, want with %q", w.Path, gotGroups[w.Path], wantGroups[w.Path]))
		}
		d = append(d, diffEntry(w.Path, resolve(want, w), resolve(got, g))...)
	}
	for _, g := range got.Entries() {
		if _, ok := want.Get(g.Path); !ok && !(fs != "xfs" && g.Path == "lost+found") {
			d = append(d, fmt.Sprintf("%q: not in the tree", g.Path))
		}
	}
	return d
}

func diffEntry(p string, w, g *tree.Entry) []string {
	var d []string
	add := func(what string, got, want any) {
		d = append(d, fmt.Sprintf("%q: %s %v, want %v", p, what, got, want))
	}
	if w.Type != g.Type {
		add("type", g.Type, w.Type)
		return d
	}
	if w.Mode != g.Mode {
		add("mode", fmt.Sprintf("0%o", g.Mode), fmt.Sprintf("0%o", w.Mode))
	}
	if w.UID != g.UID || w.GID != g.GID {
		add("owner", fmt.Sprintf("%d:%d", g.UID, g.GID), fmt.Sprintf("%d:%d", w.UID, w.GID))
	}
	if w.Type == tree.Regular && w.Size != g.Size {
		add("size", g.Size, w.Size)
	}
	if w.Type == tree.Symlink && w.Link != g.Link {
		add("target", fmt.Sprintf("%q", g.Link), fmt.Sprintf("%q", w.Link))
	}
	if (w.Type == tree.CharDevice || w.Type == tree.BlockDevice) && (w.Major != g.Major || w.Minor != g.Minor) {
		add("device", fmt.Sprintf("%d:%d", g.Major, g.Minor), fmt.Sprintf("%d:%d", w.Major, w.Minor))
	}
	if !maps.Equal(w.Xattrs, g.Xattrs) && (len(w.Xattrs) > 0 || len(g.Xattrs) > 0) {
		add("xattrs", fmt.Sprintf("%q", g.Xattrs), fmt.Sprintf("%q", w.Xattrs))
	}
	if w.ModTime != g.ModTime {
		add("mtime", g.ModTime, w.ModTime)
	}
	return d
}

// linkGroups maps every path to the first path, in tree order, of the
// names sharing its inode, so trees naming a different link as the
// original compare equal.
func linkGroups(t *tree.Tree) map[string]string {
	members := map[string][]string{}
	for _, e := range t.Entries() {
		leader := e.Path
		if e.Type == tree.Hardlink {
			leader = e.Link
		}
		members[leader] = append(members[leader], e.Path)
	}
	out := map[string]string{}
	for _, m := range members {
		first := slices.MinFunc(m, func(a, b string) int {
			if tree.Less(a, b) {
				return -1
			}
			return 1
		})
		for _, p := range m {
			out[p] = first
		}
	}
	return out
}

func sortedKeys(m map[string]string) []string {
	k := slices.Collect(maps.Keys(m))
	sort.Strings(k)
	return k
}
