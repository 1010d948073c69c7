package flatten

import (
	"archive/tar"
	"context"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"strings"
	"time"

	"github.com/slipway/slipway/services/builder/tree"
)

const (
	whiteoutPrefix = ".wh."
	// whiteoutMeta starts AUFS metadata names (.wh..wh.plnk, .wh..wh.aufs),
	// which are not part of the filesystem.
	whiteoutMeta = whiteoutPrefix + whiteoutPrefix
	opaqueMarker = whiteoutMeta + ".opq"
	xattrPrefix  = "SCHILY.xattr."
)

// flattener applies layers to a directory and keeps the model of it.
type flattener struct {
	ctx      context.Context
	root     *os.Root
	pol      Policy
	model    *node
	entries  int
	streamed int64 // bytes read from the layers' tar streams
	written  int64 // bytes of file content written
	// skipped holds device paths dropped by SkipDevices, so hard links to
	// them are dropped too instead of failing as dangling.
	skipped map[string]bool
	buf     []byte
	// readAhead reads each layer's stream on a goroutine of its own,
	// through the buffers in ahead.
	readAhead bool
	ahead     [][]byte
}

func newFlattener(ctx context.Context, root *os.Root, pol Policy) *flattener {
	return &flattener{
		ctx: ctx, root: root, pol: pol, model: newRoot(),
		skipped: map[string]bool{}, buf: make([]byte, 128<<10),
	}
}

func (f *flattener) tree() *tree.Tree { return f.model.toTree() }

func (f *flattener) applyLayer(idx int, l Layer) error {
	fail := func(entry string, err error) error {
		return &Error{Layer: idx, Digest: l.Digest(), Entry: entry, Err: err}
	}
	rc, err := l.Uncompressed()
	if err != nil {
		return fail("", err)
	}
	defer rc.Close()
	m := &meter{ctx: f.ctx, r: rc, room: f.pol.MaxBytes - f.streamed, limit: f.pol.MaxBytes}
	var s stream = m
	if f.readAhead {
		a := startReadAhead(f.ctx, m, f.aheadBufs())
		s = a
		// Before rc.Close, and before m is read here.
		defer func() { a.stop(); f.streamed += m.n }()
	} else {
		defer func() { f.streamed += m.n }()
	}
	return f.extract(idx, s, fail)
}

// stream is a layer's tar stream as the flattener reads it.
type stream interface {
	io.Reader
	// cause prefers the stream's own error (cap, cancellation) to err,
	// which may have come from it wrapped by the tar reader.
	cause(err error) error
}

// extract applies the entries of the tar stream s.
func (f *flattener) extract(idx int, s stream, fail func(entry string, err error) error) error {
	tr := tar.NewReader(s)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fail("", s.cause(wrapf(ErrInvalid, err, "reading the tar stream: %v", err)))
		}
		if f.entries++; f.entries > f.pol.MaxEntries {
			return fail("", errorf(ErrLimit, "more than %s entries", commas(f.pol.MaxEntries)))
		}
		if err := f.ctx.Err(); err != nil {
			return fail("", err)
		}
		if err := f.apply(idx, hdr, tr); err != nil {
			return fail(hdr.Name, s.cause(err))
		}
	}
	// Read to the end so that verifying readers under us (digest, gzip
	// checksum) see all of the stream; the tail counts against the cap.
	if _, err := io.CopyBuffer(io.Discard, s, f.buf); err != nil {
		return fail("", s.cause(wrapf(ErrInvalid, err, "reading the end of the stream: %v", err)))
	}
	return nil
}

// aheadBufs returns the read-ahead buffers, made on first use and then
// shared by the layers in turn.
func (f *flattener) aheadBufs() [][]byte {
	if f.ahead == nil {
		f.ahead = make([][]byte, aheadBuffers)
		for i := range f.ahead {
			f.ahead[i] = make([]byte, aheadBufferSize)
		}
	}
	return f.ahead
}

// apply applies one tar entry.
func (f *flattener) apply(layer int, hdr *tar.Header, r io.Reader) error {
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil // carries nothing for the filesystem
	}
	p, err := entryPath(hdr.Name)
	if err != nil {
		return err
	}
	if p == "." {
		return f.applyRoot(layer, hdr)
	}
	comps := splitPath(p)
	for i, c := range comps[:len(comps)-1] {
		if strings.HasPrefix(c, whiteoutPrefix) {
			if i == 0 && strings.HasPrefix(c, whiteoutMeta) {
				return nil // inside AUFS metadata such as .wh..wh.plnk
			}
			return errorf(ErrInvalid, "whiteout name %q used as a directory", c)
		}
	}
	dir, base := path.Dir(p), path.Base(p)
	if strings.HasPrefix(base, whiteoutPrefix) {
		return f.whiteout(layer, dir, base)
	}
	parent, err := f.dirNode(layer, dir, true)
	if err != nil {
		return err
	}
	return f.create(layer, parent, base, hdr, r)
}

// create applies a non-whiteout entry named base in parent.
func (f *flattener) create(layer int, parent *node, base string, hdr *tar.Header, r io.Reader) error {
	existing := parent.kids[base]
	switch hdr.Typeflag {
	case tar.TypeDir:
		return f.mkdir(layer, parent, base, existing, hdr)
	case tar.TypeReg, tar.TypeGNUSparse:
		return f.writeFile(layer, parent, base, existing, hdr, r)
	case tar.TypeSymlink:
		return f.symlink(layer, parent, base, existing, hdr)
	case tar.TypeLink:
		return f.hardlink(layer, parent, base, existing, hdr)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		return f.special(layer, parent, base, existing, hdr)
	}
	return errorf(ErrUnsupported, "unsupported entry type %s", typeName(hdr.Typeflag))
}

// entryPath checks an entry's name and returns it in tree.Clean form.
func entryPath(name string) (string, error) {
	switch {
	case name == "":
		return "", errorf(ErrInvalid, "empty name")
	case strings.HasPrefix(name, "/"):
		return "", errorf(ErrUnsafe, "absolute path")
	}
	p := path.Clean(name)
	if p == ".." || strings.HasPrefix(p, "../") {
		return "", errorf(ErrUnsafe, "path climbs out of the root")
	}
	// Names end up in the builders' scripts: control characters never
	// get that far.
	if err := tree.CheckPath(p); err != nil {
		return "", errorf(ErrUnsafe, "%v", err)
	}
	return p, nil
}

func (f *flattener) applyRoot(layer int, hdr *tar.Header) error {
	if hdr.Typeflag != tar.TypeDir {
		return errorf(ErrInvalid, "the root is not a directory")
	}
	ino, err := f.meta(hdr, tree.Dir)
	if err != nil {
		return err
	}
	f.model.ino.setMeta(ino)
	f.model.layer = layer
	return nil
}

// dirNode returns the directory at p. Missing directories are created (as
// implicit parents, 0755 root:root) when create is set, and otherwise make
// dirNode return nil, as does a non-directory when create is not set. A
// symlink on the way is always an error: it is never followed.
func (f *flattener) dirNode(layer int, p string, create bool) (*node, error) {
	n := f.model
	for _, c := range splitPath(p) {
		k, ok := n.kids[c]
		switch {
		case !ok && !create:
			return nil, nil
		case !ok:
			var err error
			if k, err = f.newDir(layer, n, c, &inode{typ: tree.Dir, mode: 0o755}); err != nil {
				return nil, err
			}
		case k.ino.typ == tree.Symlink:
			return nil, errorf(ErrUnsafe, "%s is a symlink (%s): entries below a symlink are refused", k.path, k.ino.link)
		case !k.isDir() && !create:
			return nil, nil
		case !k.isDir():
			return nil, errorf(ErrInvalid, "%s is not a directory", k.path)
		}
		n = k
	}
	return n, nil
}

func (f *flattener) newDir(layer int, parent *node, name string, ino *inode) (*node, error) {
	p := childPath(parent, name)
	if err := f.root.Mkdir(p, 0o700); err != nil {
		return nil, err
	}
	// The umask may have taken the owner's bits, which the writer needs.
	if err := f.root.Chmod(p, 0o700); err != nil {
		return nil, err
	}
	return parent.add(name, ino, layer), nil
}

// remove deletes n (and its subtree) from the model and the disk.
func (f *flattener) remove(n *node) error {
	if n == nil {
		return nil
	}
	if n.ino.onDisk() {
		if err := f.root.RemoveAll(n.path); err != nil {
			return err
		}
	}
	n.detach()
	return nil
}

func (f *flattener) mkdir(layer int, parent *node, base string, existing *node, hdr *tar.Header) error {
	ino, err := f.meta(hdr, tree.Dir)
	if err != nil {
		return err
	}
	if existing != nil && existing.isDir() {
		// A directory over a directory merges: only the metadata changes.
		existing.ino.setMeta(ino)
		existing.layer = layer
		return nil
	}
	if err := f.remove(existing); err != nil {
		return err
	}
	_, err = f.newDir(layer, parent, base, ino)
	return err
}

func (f *flattener) writeFile(layer int, parent *node, base string, existing *node, hdr *tar.Header, r io.Reader) error {
	ino, err := f.meta(hdr, tree.Regular)
	if err != nil {
		return err
	}
	if hdr.Size > f.pol.MaxBytes-f.written {
		return f.sizeError()
	}
	// Unlink first: writing into the old file would change every hard
	// link to it, in lower layers too.
	if err := f.remove(existing); err != nil {
		return err
	}
	perm := fs.FileMode(0o600)
	if ino.mode&0o111 != 0 {
		perm = 0o700
	}
	p := childPath(parent, base)
	out, err := f.root.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	sw := &sparseWriter{f: out}
	n, err := io.CopyBuffer(sw, r, f.buf)
	f.written += n
	if err == nil {
		err = sw.finish()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	ino.size = n
	parent.add(base, ino, layer)
	return nil
}

func (f *flattener) symlink(layer int, parent *node, base string, existing *node, hdr *tar.Header) error {
	target := hdr.Linkname
	if err := checkSymlink(parent, target); err != nil {
		return err
	}
	ino, err := f.meta(hdr, tree.Symlink)
	if err != nil {
		return err
	}
	ino.link = target
	if err := f.remove(existing); err != nil {
		return err
	}
	// The target is stored as written; nothing ever follows it here.
	if err := f.root.Symlink(target, childPath(parent, base)); err != nil {
		return err
	}
	parent.add(base, ino, layer)
	return nil
}

// checkSymlink refuses a relative target that climbs above the root from
// the link's directory. Absolute targets are resolved inside the guest.
func checkSymlink(dir *node, target string) error {
	switch {
	case target == "":
		return errorf(ErrInvalid, "symlink with an empty target")
	case tree.CheckLink(target) != nil:
		return errorf(ErrUnsafe, "%v", tree.CheckLink(target))
	case strings.HasPrefix(target, "/"):
		return nil
	}
	if p := path.Join(dir.path, target); p == ".." || strings.HasPrefix(p, "../") {
		return errorf(ErrUnsafe, "symlink target %q climbs out of the root", target)
	}
	return nil
}

func (f *flattener) hardlink(layer int, parent *node, base string, existing *node, hdr *tar.Header) error {
	target, err := entryPath(hdr.Linkname)
	if err != nil {
		return errorf(kindOf(err), "hard link target %q: %v", hdr.Linkname, err)
	}
	// Replacing the existing name first is what a link over it does; if
	// that removed the target itself, the lookup below says so.
	if err := f.remove(existing); err != nil {
		return err
	}
	t, err := f.lookup(target)
	switch {
	case err != nil:
		return errorf(ErrUnsafe, "hard link target %q: %v", hdr.Linkname, err)
	case t == nil && f.skipped[target]:
		return nil // a link to a device SkipDevices dropped
	case t == nil:
		return errorf(ErrUnsafe, "hard link target %q does not exist (missing or not yet extracted)", hdr.Linkname)
	case t.isDir():
		return errorf(ErrUnsafe, "hard link target %q is a directory", hdr.Linkname)
	}
	// Like docker and containerd, which chown and chmod the new name, the
	// link's own header sets the shared inode's owner, mode and time.
	hdrMeta, err := f.meta(hdr, t.ino.typ)
	if err != nil {
		return err
	}
	t.ino.setLinkMeta(hdrMeta)
	if t.ino.typ == tree.Symlink {
		return f.copySymlink(layer, parent, base, t.ino)
	}
	if t.ino.onDisk() {
		if err := f.root.Link(target, childPath(parent, base)); err != nil {
			return err
		}
	}
	parent.add(base, t.ino, layer)
	return nil
}

// copySymlink makes a hard link to a symlink a symlink of its own with the
// same target: it reads the same in the guest, and the filesystem builders
// need not link symlinks. Its target must stay inside the root from the
// new place too.
func (f *flattener) copySymlink(layer int, parent *node, base string, ino *inode) error {
	if err := checkSymlink(parent, ino.link); err != nil {
		return err
	}
	if err := f.root.Symlink(ino.link, childPath(parent, base)); err != nil {
		return err
	}
	c := *ino
	c.nlink = 0
	parent.add(base, &c, layer)
	return nil
}

// lookup returns the node at p without creating or following anything:
// nil when it does not exist, an error when a symlink is on the way.
func (f *flattener) lookup(p string) (*node, error) {
	dir, err := f.dirNode(0, path.Dir(p), false)
	if err != nil || dir == nil {
		return nil, err
	}
	return dir.kids[path.Base(p)], nil
}

// special records a device node or FIFO; nothing is created on disk.
func (f *flattener) special(layer int, parent *node, base string, existing *node, hdr *tar.Header) error {
	typ := map[byte]tree.Type{tar.TypeChar: tree.CharDevice, tar.TypeBlock: tree.BlockDevice, tar.TypeFifo: tree.FIFO}[hdr.Typeflag]
	if typ != tree.FIFO && f.pol.Devices == RefuseDevices {
		return errorf(ErrUnsupported, "device nodes are refused by the policy")
	}
	ino, err := f.meta(hdr, typ)
	if err != nil {
		return err
	}
	if err := f.remove(existing); err != nil {
		return err
	}
	if typ != tree.FIFO && f.pol.Devices == SkipDevices {
		f.skipped[childPath(parent, base)] = true
		return nil
	}
	if typ != tree.FIFO {
		if ino.major, err = u32("device major", hdr.Devmajor); err != nil {
			return err
		}
		if ino.minor, err = u32("device minor", hdr.Devminor); err != nil {
			return err
		}
	}
	parent.add(base, ino, layer)
	return nil
}

// meta reads an entry's owner, mode, time and xattrs, applying the setuid
// policy.
func (f *flattener) meta(hdr *tar.Header, typ tree.Type) (*inode, error) {
	uid, err := u32("uid", int64(hdr.Uid))
	if err != nil {
		return nil, err
	}
	gid, err := u32("gid", int64(hdr.Gid))
	if err != nil {
		return nil, err
	}
	ino := &inode{typ: typ, mode: uint32(hdr.Mode & 0o7777), uid: uid, gid: gid, mtime: hdr.ModTime.Unix()}
	if f.pol.Setuid == StripSetuid && typ != tree.Dir {
		ino.mode &^= 0o6000
	}
	for k, v := range hdr.PAXRecords {
		if name, ok := strings.CutPrefix(k, xattrPrefix); ok {
			if err := tree.CheckXattr(name, v); err != nil {
				return nil, errorf(ErrUnsafe, "%v", err)
			}
			if ino.xattrs == nil {
				ino.xattrs = map[string]string{}
			}
			ino.xattrs[name] = v
		}
	}
	return ino, nil
}

// setMeta takes the owner, mode, time and xattrs of m.
func (i *inode) setMeta(m *inode) {
	i.mode, i.uid, i.gid, i.mtime, i.xattrs = m.mode, m.uid, m.gid, m.mtime, m.xattrs
}

// setLinkMeta applies a hard link header's metadata to the shared inode:
// symlinks keep their mode, and xattrs change only when the header has some.
func (i *inode) setLinkMeta(m *inode) {
	i.uid, i.gid, i.mtime = m.uid, m.gid, m.mtime
	if i.typ != tree.Symlink {
		i.mode = m.mode
	}
	if m.xattrs != nil {
		i.xattrs = m.xattrs
	}
}

func u32(what string, v int64) (uint32, error) {
	if v < 0 || v > math.MaxUint32 {
		return 0, errorf(ErrInvalid, "%s %d out of range", what, v)
	}
	return uint32(v), nil
}

// whiteout applies a .wh. entry in directory dir.
func (f *flattener) whiteout(layer int, dir, base string) error {
	// An opaque marker implies its directory, which may not exist yet.
	d, err := f.dirNode(layer, dir, base == opaqueMarker)
	if err != nil {
		return err
	}
	if base == opaqueMarker {
		return f.hideLower(d, layer)
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // AUFS metadata
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return errorf(ErrInvalid, "whiteout %q names nothing", base)
	}
	if d == nil || d.kids[name] == nil {
		return nil // nothing below to hide
	}
	n := d.kids[name]
	switch {
	case !n.touched(layer):
		return f.remove(n)
	case n.isDir():
		// This layer wrote the directory too: only what is below goes.
		return f.hideLower(n, layer)
	}
	return nil
}

// hideLower removes from dir's subtree what lower layers wrote, keeping what
// this layer wrote and the directories leading to it.
func (f *flattener) hideLower(dir *node, layer int) error {
	for _, k := range dir.kids {
		var err error
		switch {
		case !k.touched(layer):
			err = f.remove(k)
		case k.isDir():
			err = f.hideLower(k, layer)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// touched says whether layer wrote n or anything below it.
func (n *node) touched(layer int) bool {
	if n.layer == layer {
		return true
	}
	for _, k := range n.kids {
		if k.touched(layer) {
			return true
		}
	}
	return false
}

// setTimes gives files and directories their modification times, after
// everything is written (creating entries changes a directory's time).
func (f *flattener) setTimes() error {
	return f.model.walk(func(n *node) error {
		if err := f.ctx.Err(); err != nil {
			return err
		}
		if n.ino.typ != tree.Regular && n.ino.typ != tree.Dir {
			return nil
		}
		t := time.Unix(n.ino.mtime, 0)
		return f.root.Chtimes(n.path, t, t)
	})
}

func (f *flattener) sizeError() error { return sizeError(f.pol.MaxBytes) }

func sizeError(limit int64) error {
	return errorf(ErrLimit, "decompressed size exceeds the limit of %s", bytesText(limit))
}

// meter counts the bytes of a layer stream against the cap as they stream,
// never reading more than one byte past it, and stops on cancellation. Its
// error sticks, so the cause survives the tar reader's wrapping. It touches
// nothing of the flattener: it may run on the read-ahead's goroutine.
type meter struct {
	ctx   context.Context
	r     io.Reader
	room  int64 // bytes the layer may still read
	limit int64 // Policy.MaxBytes, for the error
	n     int64 // bytes read
	err   error
}

func (m *meter) Read(p []byte) (int, error) {
	if m.err != nil {
		return 0, m.err
	}
	if err := m.ctx.Err(); err != nil {
		m.err = err
		return 0, err
	}
	if left := m.room - m.n; int64(len(p)) > left {
		p = p[:max(left+1, 0)]
	}
	n, err := m.r.Read(p)
	m.n += int64(n)
	if m.n > m.room {
		m.err = sizeError(m.limit)
		return 0, m.err
	}
	return n, err
}

// cause prefers the meter's own error (cap, cancellation) to err.
func (m *meter) cause(err error) error {
	if m.err != nil {
		return m.err
	}
	return err
}
