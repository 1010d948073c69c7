package fsimage

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// listed is one inode found in an image, with every name it has.
type listed struct {
	ino   uint64
	entry *tree.Entry // metadata; Path is the first name in tree order
	names []string
	// nlink is the link count the inode stores, format its data fork's
	// format (xfs: local, extents or btree); the xfs reader fills them.
	nlink  uint32
	format string
}

// inodeList gathers the inodes of an image as its directories are walked.
type inodeList struct {
	byIno map[uint64]*listed
}

func (l *inodeList) add(ino uint64, p string, e *tree.Entry) (first bool) {
	if x, ok := l.byIno[ino]; ok {
		x.names = append(x.names, p)
		return false
	}
	e.Path = p
	l.byIno[ino] = &listed{ino: ino, entry: e, names: []string{p}}
	return true
}

// tree builds the Tree: each inode's first name in tree order holds its
// metadata, its other names become hard links to it.
func (l *inodeList) tree() *tree.Tree {
	t := tree.New()
	for _, x := range l.byIno {
		sort.Slice(x.names, func(i, j int) bool { return tree.Less(x.names[i], x.names[j]) })
		x.entry.Path = x.names[0]
		t.Put(x.entry)
		for _, n := range x.names[1:] {
			t.Put(&tree.Entry{Path: n, Type: tree.Hardlink, Link: x.names[0]})
		}
	}
	return t
}

func typeOf(mode uint32) (tree.Type, bool) {
	for t, bits := range typeBits {
		if mode&0o170000 == bits {
			return t, true
		}
	}
	return 0, false
}

// ReadExt lists the tree of an ext2/3/4 image with debugfs, without
// mounting it: paths, types, modes, owners, sizes, symlink targets, device
// numbers, xattrs and mtimes. Names sharing an inode are reported as hard
// links to the first of them in tree order.
func ReadExt(ctx context.Context, image string) (*tree.Tree, error) {
	l, err := listExt(ctx, image)
	if err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp("", "fsimage-read-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	if err := statExt(ctx, image, l, work); err != nil {
		return nil, err
	}
	return l.tree(), nil
}

// listExt walks the directories breadth first, one debugfs run per level.
func listExt(ctx context.Context, image string) (*inodeList, error) {
	l := &inodeList{byIno: map[uint64]*listed{}}
	l.add(2, ".", &tree.Entry{Type: tree.Dir})
	level := map[uint64]string{2: "."}
	for len(level) > 0 {
		var cmds []string
		for ino := range level {
			cmds = append(cmds, fmt.Sprintf("ls -p <%d>", ino))
		}
		next := map[uint64]string{}
		var dir string
		err := debugfsScript(ctx, image, cmds, func(l2 string) error {
			if cmd, ok := strings.CutPrefix(l2, "debugfs: ls -p <"); ok {
				ino, err := strconv.ParseUint(strings.TrimSuffix(cmd, ">"), 10, 64)
				dir = level[ino]
				return err
			}
			return parseLsLine(l, l2, dir, next)
		})
		if err != nil {
			return nil, err
		}
		level = next
	}
	return l, nil
}

// parseLsLine reads one line of `ls -p`: /ino/mode/uid/gid/name/size/.
func parseLsLine(l *inodeList, line, dir string, next map[uint64]string) error {
	if !strings.HasPrefix(line, "/") || !strings.HasSuffix(line, "/") {
		return nil
	}
	f := strings.Split(line[1:len(line)-1], "/")
	if len(f) < 6 {
		return fmt.Errorf("debugfs ls -p: unexpected line %q", line)
	}
	name := strings.Join(f[4:len(f)-1], "/")
	ino, err1 := strconv.ParseUint(f[0], 10, 64)
	mode, err2 := strconv.ParseUint(f[1], 8, 32)
	// debugfs prints owners as signed numbers: 4000000000 is -294967296.
	uid, err3 := strconv.ParseInt(f[2], 10, 64)
	gid, err4 := strconv.ParseInt(f[3], 10, 64)
	size, _ := strconv.ParseInt(f[len(f)-1], 10, 64)
	for _, err := range []error{err1, err2, err3, err4} {
		if err != nil {
			return fmt.Errorf("debugfs ls -p: line %q: %w", line, err)
		}
	}
	if name == ".." || ino == 0 || (name == "." && dir != ".") { // ino 0: an unused slot
		return nil
	}
	typ, ok := typeOf(uint32(mode))
	if !ok {
		return fmt.Errorf("debugfs ls -p: %q has an unknown type (mode 0%o)", name, mode)
	}
	if name == "." { // the root's own metadata
		e := l.byIno[ino].entry
		e.Mode, e.UID, e.GID = uint32(mode)&0o7777, uint32(uid), uint32(gid)
		return nil
	}
	p := name
	if dir != "." {
		p = dir + "/" + name
	}
	e := &tree.Entry{Type: typ, Mode: uint32(mode) & 0o7777, UID: uint32(uid), GID: uint32(gid)}
	if typ == tree.Regular || typ == tree.Symlink {
		e.Size = size
	}
	if l.add(ino, p, e) && typ == tree.Dir {
		next[ino] = p
	}
	return nil
}

// statExt fills in what ls -p does not say: mtimes, device numbers,
// symlink targets and xattrs. Values travel through files in work, so
// binary bytes survive.
func statExt(ctx context.Context, image string, l *inodeList, work string) error {
	var cmds []string
	for ino := range l.byIno {
		cmds = append(cmds, fmt.Sprintf("stat <%d>", ino), fmt.Sprintf("ea_list <%d>", ino))
	}
	var cur *listed
	xattrNames := map[uint64][]string{}
	err := debugfsScript(ctx, image, cmds, func(line string) error {
		if rest, ok := strings.CutPrefix(line, "debugfs: "); ok {
			_, arg, _ := strings.Cut(rest, " <")
			ino, err := strconv.ParseUint(strings.TrimSuffix(arg, ">"), 10, 64)
			cur = l.byIno[ino]
			return err
		}
		if cur == nil {
			return nil
		}
		if name, ok := parseEaListLine(line); ok {
			xattrNames[cur.ino] = append(xattrNames[cur.ino], name)
			return nil
		}
		return parseStatLine(cur.entry, line)
	})
	if err != nil {
		return err
	}
	return fetchExtValues(ctx, image, l, xattrNames, work)
}

// parseEaListLine reads "  name (len) = value" from ea_list; debugfs
// leaves out " = value" for empty and long values.
func parseEaListLine(line string) (string, bool) {
	m := eaListRe.FindStringSubmatch(line)
	if m == nil {
		return "", false
	}
	return m[1], true
}

var eaListRe = regexp.MustCompile(`^  (.+?) \(\d+\)(?: = .*)?$`)

func parseStatLine(e *tree.Entry, line string) error {
	switch {
	case strings.HasPrefix(line, " mtime: 0x"):
		v, _, _ := strings.Cut(strings.TrimPrefix(line, " mtime: 0x"), " ")
		sec, extra, _ := strings.Cut(v, ":")
		s, err := strconv.ParseUint(sec, 16, 32)
		if err != nil {
			return fmt.Errorf("debugfs stat: %q: %w", line, err)
		}
		x, _ := strconv.ParseUint(extra, 16, 32)
		e.ModTime = int64(int32(uint32(s))) + int64(x&3)<<32
	case strings.Contains(line, "Device major/minor number: "): // "(New-style) Device…" too
		_, v, _ := strings.Cut(line, "Device major/minor number: ")
		v, _, _ = strings.Cut(v, " ")
		ma, mi, _ := strings.Cut(v, ":")
		major, err1 := strconv.ParseUint(ma, 10, 32)
		minor, err2 := strconv.ParseUint(mi, 10, 32)
		if err1 != nil || err2 != nil {
			return fmt.Errorf("debugfs stat: %q: bad device numbers", line)
		}
		e.Major, e.Minor = uint32(major), uint32(minor)
	case strings.HasPrefix(line, `Fast link dest: "`):
		v := strings.TrimPrefix(line, `Fast link dest: "`)
		e.Link = v[:strings.LastIndex(v, `"`)]
	}
	return nil
}

// fetchExtValues dumps slow symlinks' targets and xattr values to files and
// reads them back.
func fetchExtValues(ctx context.Context, image string, l *inodeList, xattrNames map[uint64][]string, work string) error {
	var cmds []string
	files := map[string]func([]byte){}
	for ino, x := range l.byIno {
		e := x.entry
		if e.Type == tree.Symlink && e.Link == "" && e.Size > 0 {
			f := filepath.Join(work, fmt.Sprintf("l%d", ino))
			qf, err := debugfsQuote(f)
			if err != nil {
				return err
			}
			cmds = append(cmds, fmt.Sprintf("dump <%d> %s", ino, qf))
			files[f] = func(b []byte) { e.Link = string(b) }
		}
		for i, name := range xattrNames[ino] {
			f := filepath.Join(work, fmt.Sprintf("x%d.%d", ino, i))
			qf, err := debugfsQuote(f)
			if err != nil {
				return err
			}
			qn, err := debugfsQuote(name)
			if err != nil {
				return fmt.Errorf("inode %d: %w", ino, err)
			}
			cmds = append(cmds, fmt.Sprintf("ea_get -f %s <%d> %s", qf, ino, qn))
			if e.Xattrs == nil {
				e.Xattrs = map[string]string{}
			}
			files[f] = func(b []byte) { e.Xattrs[name] = string(b) }
		}
	}
	if len(cmds) == 0 {
		return nil
	}
	if err := debugfsScript(ctx, image, cmds, nil); err != nil {
		return err
	}
	for f, set := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return fmt.Errorf("debugfs did not write %s: %w", f, err)
		}
		set(b)
	}
	return nil
}

// writeScript writes cmds, one a line, to a new temporary file named
// after prefix and returns its path; the caller removes it.
func writeScript(prefix string, cmds []string) (string, error) {
	f, err := os.CreateTemp("", prefix)
	if err != nil {
		return "", err
	}
	if _, err := io.WriteString(f, strings.Join(cmds, "\n")+"\n"); err != nil {
		f.Close()
		os.Remove(f.Name())
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// debugfsScript runs cmds through one read-only debugfs, handing each
// output line to onLine; debugfs echoes each command as "debugfs: cmd".
func debugfsScript(ctx context.Context, image string, cmds []string, onLine func(string) error) error {
	script, err := writeScript("fsimage-debugfs-", cmds)
	if err != nil {
		return err
	}
	defer os.Remove(script)
	stderr, err := run(ctx, onLine, "debugfs", "-f", script, image)
	if err != nil {
		return err
	}
	return debugfsErrors(stderr)
}

// ContentHash returns the SHA-256 (hex) of the regular file at p (in tree
// form, "etc/passwd", or absolute) inside image, a filesystem of type fs,
// read without mounting: debugfs cat for ext, the file's extents read from
// the image for xfs.
func ContentHash(ctx context.Context, image, fs, p string) (string, error) {
	if err := checkFilesystem(fs); err != nil {
		return "", err
	}
	h := sha256.New()
	var err error
	if fs == "xfs" {
		err = xfsCat(ctx, image, tree.Clean(p), h)
	} else {
		err = extCat(ctx, image, tree.Clean(p), h)
	}
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// extCat streams a file's content out of an ext image with debugfs cat.
func extCat(ctx context.Context, image, p string, w io.Writer) error {
	qp, err := debugfsQuote(abs(p))
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "debugfs", "-R", "cat "+qp, image)
	cmd.Env = toolEnv()
	var stderr headBuffer
	cmd.Stdout, cmd.Stderr = w, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("debugfs cat %s: %v: %s", abs(p), err, firstLines(stderr.String(), 4))
	}
	if err := debugfsErrors(stderr.String()); err != nil {
		return fmt.Errorf("%s in %s: %w", abs(p), path.Base(image), err)
	}
	return nil
}
