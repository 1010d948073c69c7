package fsimage

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/slipway/slipway/services/builder/tree"
)

// typeBits are the S_IFMT bits of each entry type.
var typeBits = map[tree.Type]uint32{
	tree.Regular: 0o100000, tree.Dir: 0o040000, tree.Symlink: 0o120000,
	tree.CharDevice: 0o020000, tree.BlockDevice: 0o060000, tree.FIFO: 0o010000,
}

// debugfsLineMax keeps script lines under debugfs's fgets buffer (BUFSIZ).
const debugfsLineMax = 8000

func buildExt(ctx context.Context, root string, t *tree.Tree, out string, sizeMiB int64, opts Options) error {
	script, done, err := writeInput(root, t, "script", writeExtScript)
	if err != nil {
		return err
	}
	defer done()
	tool := "mkfs." + opts.Filesystem
	// lazy_journal_init: mke2fs would write the whole ext4 journal with
	// zeros (16 MiB to 1 GiB by the filesystem's size), which the image
	// file's holes already read as; left alone, they stay holes that
	// neither mkfs nor the qcow2 writer have to go through. (mke2fs 1.47
	// ignores it for ext3's journal, which has no extents.)
	args := []string{"-F", "-q", "-b", strconv.Itoa(blockSize),
		"-N", strconv.FormatInt(estimate(t, opts.Filesystem).inodeCount(sizeMiB), 10),
		"-d", root, "-E", "root_owner=0:0,lazy_journal_init=1"}
	if opts.Label != "" {
		args = append(args, "-L", opts.Label)
	}
	if opts.UUID != "" {
		args = append(args, "-U", opts.UUID)
	}
	if stderr, err := run(ctx, nil, tool, append(args, out)...); err != nil {
		return noSpace(tool, stderr, err)
	}
	stderr, err := run(ctx, nil, "debugfs", "-w", "-f", script, out)
	if err == nil {
		err = debugfsErrors(stderr)
	}
	if err != nil {
		return noSpace("debugfs", stderr, fmt.Errorf("%s: applying owners, modes, devices and xattrs: %w", opts.Filesystem, err))
	}
	if _, err := run(ctx, nil, "e2fsck", "-fn", out); err != nil {
		return fmt.Errorf("%s image fails its check: %w", opts.Filesystem, err)
	}
	return nil
}

// noSpace turns a tool's out-of-space failure into a TooSmallError (Build
// fills in the sizes) and leaves other errors alone.
func noSpace(tool, stderr string, err error) error {
	for _, s := range []string{"Could not allocate block", "Could not allocate inode", "No space left", "Could not allocate"} {
		if i := strings.Index(stderr, s); i >= 0 {
			line, _, _ := strings.Cut(stderr[i:], "\n")
			return &TooSmallError{Tool: tool, Detail: line}
		}
	}
	return err
}

// debugfsErrors finds failed commands: debugfs -f exits 0 whatever its
// commands do, and reports their failures on stderr.
func debugfsErrors(stderr string) error {
	var bad []string
	for _, l := range strings.Split(stderr, "\n") {
		if l == "" || strings.HasPrefix(l, "debugfs ") {
			continue // the version banner
		}
		bad = append(bad, l)
	}
	if len(bad) > 0 {
		return fmt.Errorf("debugfs: %s", firstLines(strings.Join(bad, "\n"), 8))
	}
	return nil
}

// abs is an entry's path in debugfs's absolute form.
func abs(p string) string {
	if p == "." {
		return "/"
	}
	return "/" + p
}

// writeExtScript writes the debugfs script that makes the image match t:
// owners, full modes and mtimes of every inode, device nodes and fifos,
// and xattrs (those on disk but not in the tree are removed). Binary xattr
// values go in files under work.
func writeExtScript(root string, t *tree.Tree, script, work string) error {
	f, err := os.Create(script)
	if err != nil {
		return err
	}
	defer f.Close()
	w := &scriptWriter{w: bufio.NewWriter(f)}
	links := map[string]int{} // device and fifo inodes that hard links share
	for _, e := range t.Entries() {
		if err := w.entry(root, t, e, work, links); err != nil {
			return fmt.Errorf("entry %q: %w", e.Path, err)
		}
	}
	for target, n := range links {
		w.line("set_inode_field %s links_count %d", w.q(abs(target)), n+1)
	}
	if w.err != nil {
		return w.err
	}
	if err := w.w.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// entry writes the commands of one entry; hard links to device nodes and
// fifos are counted in links.
func (w *scriptWriter) entry(root string, t *tree.Tree, e *tree.Entry, work string, links map[string]int) error {
	p := w.q(abs(e.Path))
	switch e.Type {
	case tree.Hardlink:
		if linksSpecial(t, e) {
			w.line("ln %s %s", w.q(abs(e.Link)), p)
			links[e.Link]++
		}
		return w.err
	case tree.CharDevice, tree.BlockDevice, tree.FIFO:
		if _, err := os.Lstat(filepath.Join(root, e.Path)); os.IsNotExist(err) {
			w.line("cd %s", w.q(abs(path.Dir(e.Path))))
			w.line("mknod %s", w.mknodArgs(e))
			w.line("cd /")
		}
	}
	w.line("set_inode_field %s uid %d", p, e.UID)
	w.line("set_inode_field %s gid %d", p, e.GID)
	w.line("set_inode_field %s mode 0%o", p, typeBits[e.Type]|e.Mode&0o7777)
	w.line("set_inode_field %s mtime @%d", p, e.ModTime)
	if err := w.xattrs(root, e, p, work); err != nil {
		return err
	}
	return w.err
}

// linksSpecial tells whether e is a hard link to a device node or fifo,
// which the directory cannot hold either.
func linksSpecial(t *tree.Tree, e *tree.Entry) bool {
	if e.Type != tree.Hardlink {
		return false
	}
	target, ok := t.Get(e.Link)
	return ok && isSpecial(target.Type)
}

func isSpecial(t tree.Type) bool {
	return t == tree.CharDevice || t == tree.BlockDevice || t == tree.FIFO
}

func (w *scriptWriter) mknodArgs(e *tree.Entry) string {
	name := w.q(path.Base(e.Path))
	switch e.Type {
	case tree.CharDevice:
		return fmt.Sprintf("%s c %d %d", name, e.Major, e.Minor)
	case tree.BlockDevice:
		return fmt.Sprintf("%s b %d %d", name, e.Major, e.Minor)
	}
	return name + " p"
}

type scriptWriter struct {
	w      *bufio.Writer
	err    error
	values int
}

// q is debugfsQuote; a refusal is kept in s.err and stops the script.
func (s *scriptWriter) q(v string) string {
	out, err := debugfsQuote(v)
	if err != nil && s.err == nil {
		s.err = err
	}
	return out
}

func (s *scriptWriter) line(format string, args ...any) {
	if s.err != nil {
		return
	}
	l := fmt.Sprintf(format, args...)
	if len(l) > debugfsLineMax {
		// A longer line would be cut by fgets and its tail read as a
		// command of its own: the language cannot carry it.
		s.err = &EncodeError{"debugfs", l[:80] + "…", fmt.Sprintf("the command is %d bytes, longer than debugfs reads (%d)", len(l), debugfsLineMax)}
		return
	}
	_, s.err = s.w.WriteString(l + "\n")
}

// xattrs sets e's xattrs from value files and removes those mke2fs copied
// from the disk that the tree does not hold (the host's SELinux labels, for
// one).
func (s *scriptWriter) xattrs(root string, e *tree.Entry, p, work string) error {
	if e.Type == tree.Regular || e.Type == tree.Dir {
		for _, name := range diskXattrs(filepath.Join(root, e.Path)) {
			if _, ok := e.Xattrs[name]; !ok {
				s.line("ea_rm %s %s", p, s.q(name))
			}
		}
	}
	for _, name := range sortedKeys(e.Xattrs) {
		s.values++
		file := filepath.Join(work, "v"+strconv.Itoa(s.values))
		if err := os.WriteFile(file, []byte(e.Xattrs[name]), 0o600); err != nil {
			return err
		}
		s.line("ea_set -f %s %s %s", s.q(file), p, s.q(name))
	}
	return nil
}

// diskXattrs lists a file's xattrs on the host; errors (no xattr support)
// mean none.
func diskXattrs(file string) []string {
	buf := make([]byte, 4096)
	n, err := syscall.Listxattr(file, buf)
	if err != nil || n <= 0 {
		return nil
	}
	return strings.FieldsFunc(string(buf[:n]), func(r rune) bool { return r == 0 })
}

// writeInput checks the tree against the directory (checkDisk), then has
// write put what the tools read about it (a debugfs script, an xfs
// protofile) in the file name of a new scratch directory, which write may
// use for further files. done removes the directory.
func writeInput(root string, t *tree.Tree, name string, write func(root string, t *tree.Tree, file, work string) error) (file string, done func(), err error) {
	if err := checkDisk(root, t); err != nil {
		return "", nil, err
	}
	work, err := os.MkdirTemp("", "fsimage-")
	if err != nil {
		return "", nil, err
	}
	done = func() { os.RemoveAll(work) }
	file = filepath.Join(work, name)
	if err := write(root, t, file, work); err != nil {
		done()
		return "", nil, err
	}
	return file, done, nil
}

// checkDisk makes sure the directory and the tree describe the same
// filesystem: everything on disk is in the tree with the same type (and
// size), hard links are real hard links, and device nodes and fifos are
// absent or real.
func checkDisk(root string, t *tree.Tree) error {
	err := filepath.WalkDir(root, func(file string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, file)
		e, ok := t.Get(tree.Clean(rel))
		if !ok {
			return fmt.Errorf("%q is in the directory but not in the tree", rel)
		}
		if e.Type == tree.Hardlink {
			return checkHardlink(root, t, e)
		}
		return checkType(root, e, d)
	})
	if err != nil {
		return err
	}
	for _, e := range t.Entries() {
		if _, err := os.Lstat(filepath.Join(root, e.Path)); err != nil && !isSpecial(e.Type) && !linksSpecial(t, e) {
			return fmt.Errorf("tree entry %q (%s) is missing from the directory: %w", e.Path, e.Type, err)
		}
	}
	return nil
}

func checkType(root string, e *tree.Entry, d os.DirEntry) error {
	mode := d.Type()
	var want os.FileMode
	switch e.Type {
	case tree.Dir:
		want = os.ModeDir
	case tree.Symlink:
		want = os.ModeSymlink
	case tree.CharDevice:
		want = os.ModeDevice | os.ModeCharDevice
	case tree.BlockDevice:
		want = os.ModeDevice
	case tree.FIFO:
		want = os.ModeNamedPipe
	}
	if mode.Type() != want {
		return fmt.Errorf("%q is a %s in the tree but %v in the directory", e.Path, e.Type, mode.Type())
	}
	if e.Type == tree.Regular {
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Size() != e.Size {
			return fmt.Errorf("%q holds %d bytes in the directory, the tree says %d", e.Path, info.Size(), e.Size)
		}
	}
	return nil
}

func checkHardlink(root string, t *tree.Tree, e *tree.Entry) error {
	target, ok := t.Get(e.Link)
	if !ok {
		return fmt.Errorf("hard link %q points to %q, which is not in the tree", e.Path, e.Link)
	}
	if target.Type == tree.Dir || target.Type == tree.Hardlink || target.Type == tree.Symlink {
		return fmt.Errorf("hard link %q points to %q, a %s", e.Path, e.Link, target.Type)
	}
	if isSpecial(target.Type) {
		return nil // linked by debugfs
	}
	a, err := os.Lstat(filepath.Join(root, e.Path))
	if err != nil {
		return err
	}
	b, err := os.Lstat(filepath.Join(root, e.Link))
	if err != nil {
		return fmt.Errorf("hard link %q: its target %q: %w", e.Path, e.Link, err)
	}
	if !os.SameFile(a, b) {
		return fmt.Errorf("hard link %q and its target %q are different files in the directory", e.Path, e.Link)
	}
	return nil
}
