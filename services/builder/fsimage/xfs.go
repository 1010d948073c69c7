package fsimage

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// xfsAttrMax bounds an inode's xattrs (names, values and headers) so they
// stay in the inode's short-form attribute fork, which xfs_db can write.
const xfsAttrMax = 200

// xfsNamespaces maps xattr prefixes to xfs_db attr_set flags.
var xfsNamespaces = map[string]string{"user.": "-u", "security.": "-s", "trusted.": "-r"}

func buildXFS(ctx context.Context, root string, t *tree.Tree, out string, sizeMiB int64, opts Options) error {
	if err := checkDisk(root, t); err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "fsimage-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	proto := filepath.Join(work, "proto")
	if err := writeProto(root, t, proto, work); err != nil {
		return err
	}
	args := []string{"-q", "-f", "-p", proto}
	if opts.Label != "" {
		args = append(args, "-L", opts.Label)
	}
	if opts.UUID != "" {
		args = append(args, "-m", "uuid="+opts.UUID)
	}
	if stderr, err := run(ctx, nil, "mkfs.xfs", append(args, out)...); err != nil {
		return noSpace("mkfs.xfs", stderr, err)
	}
	if err := fixXFS(ctx, t, out); err != nil {
		return err
	}
	if _, err := run(ctx, nil, "xfs_repair", "-n", "-f", out); err != nil {
		return fmt.Errorf("xfs image fails its check: %w", err)
	}
	got, err := ReadXFS(ctx, out)
	if err != nil {
		return err
	}
	if d := Diff(t, got, "xfs"); len(d) > 0 {
		return fmt.Errorf("xfs image differs from the tree: %s", firstLines(strings.Join(d, "\n"), 8))
	}
	return nil
}

// checkProtoName refuses what a protofile cannot say: its tokens are
// separated by white space, ":" starts a comment and "$" ends a directory.
func checkProtoName(e *tree.Entry) error {
	if e.Path != "." {
		name := path.Base(e.Path)
		if strings.ContainsAny(name, " \t") || strings.HasPrefix(name, ":") || name == "$" {
			return fmt.Errorf("xfs: entry %q: mkfs.xfs protofiles cannot hold names with spaces or tabs, starting with a colon, or named $ (ext4 can)", e.Path)
		}
	}
	if e.Type == tree.Symlink && (e.Link == "" || strings.ContainsAny(e.Link, " \t") || strings.HasPrefix(e.Link, ":")) {
		return fmt.Errorf("xfs: symlink %q: mkfs.xfs protofiles cannot hold the target %q (empty, white space or a leading colon; ext4 can)", e.Path, e.Link)
	}
	n := 4
	for k, v := range e.Xattrs {
		ns, _ := xattrNamespace(k)
		if ns == "" || strings.ContainsAny(k, " \t\"\\") {
			return fmt.Errorf("xfs: entry %q: xattr %q is not in the user, security or trusted namespace, or holds white space or quotes", e.Path, k)
		}
		n += 3 + len(k) - len(ns) + len(v)
	}
	if n > xfsAttrMax {
		return fmt.Errorf("xfs: entry %q: its xattrs take %d bytes, more than this builder can write to xfs (%d; ext4 has no such limit)", e.Path, n, xfsAttrMax)
	}
	return nil
}

func xattrNamespace(name string) (prefix, flag string) {
	for p, f := range xfsNamespaces {
		if strings.HasPrefix(name, p) && len(name) > len(p) {
			return p, f
		}
	}
	return "", ""
}

// writeProto writes the mkfs.xfs protofile for t. Hard links become copies
// (the format has none); sources whose host path holds white space are
// reached through symlinks in work.
func writeProto(root string, t *tree.Tree, proto, work string) error {
	f, err := os.Create(proto)
	if err != nil {
		return err
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	children := map[string][]*tree.Entry{}
	for _, e := range t.Entries() {
		if e.Path != "." {
			children[path.Dir(e.Path)] = append(children[path.Dir(e.Path)], e)
		}
	}
	rootEntry, _ := t.Get(".")
	fmt.Fprintf(w, "fsimage\n0 0\n%s %d %d\n", protoMode(rootEntry), rootEntry.UID, rootEntry.GID)
	var sources int
	var walk func(dir string) error
	walk = func(dir string) error {
		for _, e := range children[dir] {
			meta := resolve(t, e)
			fmt.Fprintf(w, "%s %s %d %d", path.Base(e.Path), protoMode(meta), meta.UID, meta.GID)
			switch meta.Type {
			case tree.Regular:
				src := filepath.Join(root, meta.Path)
				if strings.ContainsAny(src, " \t\n") || strings.HasPrefix(src, ":") {
					sources++
					alias := filepath.Join(work, "s"+strconv.Itoa(sources))
					if err := os.Symlink(src, alias); err != nil {
						return err
					}
					src = alias
				}
				fmt.Fprintf(w, " %s", src)
			case tree.Symlink:
				fmt.Fprintf(w, " %s", meta.Link)
			case tree.CharDevice, tree.BlockDevice:
				fmt.Fprintf(w, " %d %d", meta.Major, meta.Minor)
			}
			fmt.Fprintln(w)
			if meta.Type == tree.Dir {
				if err := walk(e.Path); err != nil {
					return err
				}
			}
		}
		_, err := fmt.Fprintln(w, "$")
		return err
	}
	if err := walk("."); err != nil {
		return err
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// resolve returns the entry holding e's metadata: its hard link target, or
// e itself.
func resolve(t *tree.Tree, e *tree.Entry) *tree.Entry {
	if e.Type == tree.Hardlink {
		if target, ok := t.Get(e.Link); ok {
			return target
		}
	}
	return e
}

var protoTypes = map[tree.Type]byte{
	tree.Regular: '-', tree.Dir: 'd', tree.Symlink: 'l',
	tree.CharDevice: 'c', tree.BlockDevice: 'b', tree.FIFO: 'p',
}

// protoMode is a protofile mode token: type, setuid, setgid, permissions.
// The sticky bit has no letter; fixXFS sets it.
func protoMode(e *tree.Entry) string {
	u, g := byte('-'), byte('-')
	if e.Mode&0o4000 != 0 {
		u = 'u'
	}
	if e.Mode&0o2000 != 0 {
		g = 'g'
	}
	return fmt.Sprintf("%c%c%c%03o", protoTypes[e.Type], u, g, e.Mode&0o777)
}

// fixXFS makes the image match what the protofile could not say (sticky
// bits, owners or modes mkfs changed, xattrs) with one xfs_db -x run.
func fixXFS(ctx context.Context, t *tree.Tree, out string) error {
	l, err := listXFS(ctx, out)
	if err != nil {
		return err
	}
	byPath := map[string]*listed{}
	for _, x := range l.byIno {
		for _, n := range x.names {
			byPath[n] = x
		}
	}
	var cmds []string
	for _, e := range t.Entries() {
		want, x := resolve(t, e), byPath[e.Path]
		if x == nil {
			return fmt.Errorf("xfs: %q is missing from the image mkfs.xfs made", e.Path)
		}
		cmds = append(cmds, xfsFixes(x.ino, want, x.entry)...)
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := xfsDBScript(ctx, out, true, cmds, nil); err != nil {
		return fmt.Errorf("xfs: setting sticky bits and xattrs: %w", err)
	}
	return nil
}

func xfsFixes(ino uint64, want, got *tree.Entry) []string {
	var c []string
	if want.Mode != got.Mode {
		c = append(c, fmt.Sprintf("write core.mode 0%o", typeBits[want.Type]|want.Mode))
	}
	if want.UID != got.UID {
		c = append(c, fmt.Sprintf("write core.uid %d", want.UID))
	}
	if want.GID != got.GID {
		c = append(c, fmt.Sprintf("write core.gid %d", want.GID))
	}
	names := sortedKeys(want.Xattrs)
	for _, k := range names {
		ns, flag := xattrNamespace(k)
		c = append(c, fmt.Sprintf("attr_set %s -v %d %s", flag, len(want.Xattrs[k]), strings.TrimPrefix(k, ns)))
	}
	for i, k := range names {
		if v := want.Xattrs[k]; v != "" {
			c = append(c, fmt.Sprintf("write a.sfattr.list[%d].value #%s", i, hex.EncodeToString([]byte(v))))
		}
	}
	if len(c) == 0 {
		return nil
	}
	return append([]string{fmt.Sprintf("inode %d", ino)}, c...)
}
