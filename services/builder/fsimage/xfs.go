package fsimage

import (
	"bufio"
	"context"
	"encoding/hex"
	"fmt"
	"math"
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

// The range of mtimes xfsFixes can write: bigtime's lower bound, and the
// largest whose encoding xfs_db 6.1 parses (a signed 64-bit number of
// nanoseconds from the lower bound): 1901-12-13 to 2194-03-23.
const (
	xfsMinTime = -1 << 31
	xfsMaxTime = math.MaxInt64/1_000_000_000 - 1<<31
)

// xfsNamespaces maps xattr prefixes to xfs_db attr_set flags.
var xfsNamespaces = map[string]string{"user.": "-u", "security.": "-s", "trusted.": "-r"}

func buildXFS(ctx context.Context, root string, t *tree.Tree, out string, sizeMiB int64, opts Options) error {
	proto, done, err := writeInput(root, t, "proto", writeProto)
	if err != nil {
		return err
	}
	defer done()
	// bigtime: timestamps past 2038, and the encoding xfsFixes writes.
	meta := "bigtime=1"
	if opts.UUID != "" {
		meta += ",uuid=" + opts.UUID
	}
	args := []string{"-q", "-f", "-p", proto, "-m", meta}
	if opts.Label != "" {
		args = append(args, "-L", opts.Label)
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

// checkProtoName refuses what a protofile or xfs_db cannot say (see
// protoWord and xfsDBWord), before anything is written.
func checkProtoName(e *tree.Entry) error {
	if e.Path != "." {
		if _, err := protoWord(path.Base(e.Path)); err != nil {
			return fmt.Errorf("xfs: entry %q: %w (ext4 can hold it)", e.Path, err)
		}
	}
	if e.Type == tree.Symlink {
		if _, err := protoWord(e.Link); err != nil {
			return fmt.Errorf("xfs: symlink %q: target: %w (ext4 can hold it)", e.Path, err)
		}
	}
	if e.Type != tree.Hardlink && (e.ModTime < xfsMinTime || e.ModTime > xfsMaxTime) {
		return fmt.Errorf("xfs: entry %q: mtime %d is outside what this builder can write to xfs (%d to %d, years 1901 to 2194)",
			e.Path, e.ModTime, int64(xfsMinTime), int64(xfsMaxTime))
	}
	n := 4
	for k, v := range e.Xattrs {
		ns, _ := xattrNamespace(k)
		if ns == "" {
			return fmt.Errorf("xfs: entry %q: xattr %q is not in the user, security or trusted namespace", e.Path, k)
		}
		if _, err := xfsDBWord(k[len(ns):]); err != nil {
			return fmt.Errorf("xfs: entry %q: xattr %q: %w", e.Path, k, err)
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

// writeProto writes the mkfs.xfs protofile for t. The format has no hard
// links: each extra name gets an empty stand-in of its target's type, which
// linkXFS replaces (see xfslink.go). Sources whose host path holds white
// space are reached through symlinks in work.
func writeProto(root string, t *tree.Tree, proto, work string) error {
	f, err := os.Create(proto)
	if err != nil {
		return err
	}
	defer f.Close()
	empty := filepath.Join(work, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		return err
	}
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
			name, err := protoWord(path.Base(e.Path))
			if err != nil {
				return fmt.Errorf("xfs: entry %q: %w", e.Path, err)
			}
			fmt.Fprintf(w, "%s %s %d %d", name, protoMode(meta), meta.UID, meta.GID)
			switch meta.Type {
			case tree.Regular:
				src := filepath.Join(root, meta.Path)
				if e.Type == tree.Hardlink {
					src = empty
				}
				if _, err := protoWord(src); err != nil {
					sources++
					alias := filepath.Join(work, "s"+strconv.Itoa(sources))
					if err := os.Symlink(src, alias); err != nil {
						return err
					}
					src = alias
				}
				fmt.Fprintf(w, " %s", src)
			case tree.Symlink:
				link, err := protoWord(meta.Link)
				if err != nil {
					return fmt.Errorf("xfs: symlink %q: %w", e.Path, err)
				}
				fmt.Fprintf(w, " %s", link)
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

// fixXFS makes the image match what the protofile could not say (hard
// links, sticky bits, owners or modes mkfs changed, mtimes, xattrs) with
// one xfs_db -x run, then has xfs_repair free the hard links' stand-ins.
func fixXFS(ctx context.Context, t *tree.Tree, out string) error {
	l, geo, err := listXFS(ctx, out)
	if err != nil {
		return err
	}
	byPath := map[string]*listed{}
	for _, x := range l.byIno {
		for _, n := range x.names {
			byPath[n] = x
		}
	}
	links, err := planLinks(t, byPath)
	if err != nil {
		return err
	}
	slots, err := findSlots(ctx, out, geo, links, l)
	if err != nil {
		return err
	}
	cmds := linkCommands(links, slots)
	for _, e := range t.Entries() {
		if e.Type == tree.Hardlink {
			continue // its target's inode is fixed
		}
		x := byPath[e.Path]
		if x == nil {
			return fmt.Errorf("xfs: %q is missing from the image mkfs.xfs made", e.Path)
		}
		fixes, err := xfsFixes(x.ino, e, x.entry)
		if err != nil {
			return fmt.Errorf("xfs: entry %q: %w", e.Path, err)
		}
		cmds = append(cmds, fixes...)
	}
	if err := xfsDBScript(ctx, out, true, cmds, checkWrite); err != nil {
		return fmt.Errorf("xfs: setting hard links, sticky bits, mtimes and xattrs: %w", err)
	}
	if len(links.links) > 0 {
		return repairXFS(ctx, out, links)
	}
	return nil
}

// checkWrite reads what an xfs_db -x script prints: each write echoes
// "field = value"; anything else is a failed command (xfs_db reports
// those on stdout and exits 0).
func checkWrite(line string) error {
	if !strings.Contains(line, " = ") {
		return fmt.Errorf("xfs_db: %s", line)
	}
	return nil
}

// xfsTime is a bigtime timestamp as xfs_db 6.1 writes it: its "sec" field
// takes the whole 64-bit on-disk value, nanoseconds since 1901-12-13
// 20:45:52 UTC. ReadXFS's check after the build catches a tool that reads
// it otherwise.
func xfsTime(unix int64) uint64 {
	return uint64(unix-xfsMinTime) * 1e9
}

func xfsFixes(ino uint64, want, got *tree.Entry) ([]string, error) {
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
	// Always: mkfs.xfs's stamp has nanoseconds, the tree's none.
	c = append(c, fmt.Sprintf("write core.mtime.sec %d", xfsTime(want.ModTime)))
	names := sortedKeys(want.Xattrs)
	for _, k := range names {
		ns, flag := xattrNamespace(k)
		if flag == "" {
			return nil, fmt.Errorf("xattr %q is not in the user, security or trusted namespace", k)
		}
		name, err := xfsDBWord(k[len(ns):])
		if err != nil {
			return nil, fmt.Errorf("xattr %q: %w", k, err)
		}
		c = append(c, fmt.Sprintf("attr_set %s -v %d %s", flag, len(want.Xattrs[k]), name))
	}
	for i, k := range names {
		if v := want.Xattrs[k]; v != "" {
			c = append(c, fmt.Sprintf("write a.sfattr.list[%d].value #%s", i, hex.EncodeToString([]byte(v))))
		}
	}
	return append([]string{fmt.Sprintf("inode %d", ino)}, c...), nil
}
