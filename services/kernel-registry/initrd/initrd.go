// Package initrd builds the minimal initial RAM disk Slipway boots a
// modular distribution kernel with: a gzip'd newc cpio holding the static
// slipway-initrd program as /init, the kernel modules that reach the root
// disk (virtio, SCSI/SATA, ext4, xfs, iso9660, dm-crypt) with everything
// they depend on, in load order, and the list of them in
// /etc/slipway-initrd/modules. The init (cmd/slipway-initrd) loads them,
// mounts the root disk and hands over to the image's own init.
//
// Dependencies come from modules.dep when depmod has run, else from each
// module's .modinfo (a kernel package as shipped has no modules.dep), with
// the soft dependencies modinfo declares (ext4 wants crc32c first) resolved
// through module aliases. Names the kernel has built in are skipped.
package initrd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/slipway/slipway/pkg/run"
)

// DefaultModules are the drivers a Slipway VM's root disk may need: the
// virtio devices QEMU and Firecracker give, SCSI and SATA disks and CDROMs,
// the filesystems the builder makes (and ISO images), and dm-crypt.
var DefaultModules = []string{
	"virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "virtio_scsi",
	"sd_mod", "sr_mod", "ahci", "ext4", "xfs", "iso9660", "dm_crypt",
}

// InitName is the init program's file name; ModuleList is where the
// initrd lists its modules, one absolute path per line, in load order.
const (
	InitName   = "slipway-initrd"
	ModuleList = "/etc/slipway-initrd/modules"
)

// File is one more file for the initrd.
type File struct {
	Path string      // absolute path inside the initrd
	Mode fs.FileMode // permission bits; default 0644
	Data []byte
}

// Options say what goes in.
type Options struct {
	// ModulesDir is a lib/modules/<version> directory; empty for a kernel
	// with the drivers built in (the initrd then only mounts and switches).
	ModulesDir string
	// Modules are the wanted module names; nil means DefaultModules, of
	// which those the kernel has neither built in nor as a module are
	// skipped (Result.Missing). Names given explicitly must exist.
	Modules []string
	// Init is the slipway-initrd binary; default DefaultInit().
	Init string
	// Extra files, added last.
	Extra []File
}

// Result tells what was built.
type Result struct {
	Modules []string // included, in load order
	Builtin []string // wanted or needed, built into the kernel
	Missing []string // default modules the kernel does not have
	Bytes   int64    // compressed bytes written
}

// DefaultInit finds the slipway-initrd binary: $SLIPWAY_INITRD_INIT, else
// beside the running executable, else bin/slipway-initrd under the working
// directory. It returns the first candidate when none exists, so an error
// can name a path.
func DefaultInit() string {
	if p := os.Getenv("SLIPWAY_INITRD_INIT"); p != "" {
		return p
	}
	return run.FindBinary(InitName)
}

// ErrNoInit: the slipway-initrd binary is missing.
var ErrNoInit = errors.New("no slipway-initrd binary")

// Build writes the initrd to w.
func Build(w io.Writer, opts Options) (Result, error) {
	var res Result
	if opts.Init == "" {
		opts.Init = DefaultInit()
	}
	initFile, err := os.Open(opts.Init)
	if err != nil {
		return res, fmt.Errorf("%w at %s (%v): build it with `make build` or `CGO_ENABLED=0 go build -o bin/slipway-initrd ./services/kernel-registry/cmd/slipway-initrd`", ErrNoInit, opts.Init, err)
	}
	defer initFile.Close()
	var ix *index
	if opts.ModulesDir != "" {
		if ix, err = loadIndex(opts.ModulesDir); err != nil {
			return res, err
		}
		if err := ix.closure(&res, opts.Modules); err != nil {
			return res, err
		}
	}
	cw := &countWriter{w: w}
	zw, err := gzip.NewWriterLevel(cw, gzip.DefaultCompression)
	if err != nil {
		return res, err
	}
	b := &builder{cpio: &cpioWriter{w: zw}, dirs: map[string]bool{}}
	if err := b.write(ix, res.Modules, initFile, opts.Extra); err != nil {
		return res, err
	}
	if err := zw.Close(); err != nil {
		return res, err
	}
	res.Bytes = cw.n
	return res, nil
}

// closure fills res with the wanted modules and their dependencies in
// load order.
func (ix *index) closure(res *Result, wanted []string) error {
	strict := wanted != nil
	if wanted == nil {
		wanted = DefaultModules
	}
	c := &closer{ix: ix, res: res, state: map[string]bool{}}
	if err := c.visitAll(wanted, true, ""); err != nil {
		return err
	}
	if strict && len(res.Missing) > 0 {
		return fmt.Errorf("the kernel has no module %s (neither in %s nor built in)", strings.Join(res.Missing, ", "), ix.dir)
	}
	return nil
}

type closer struct {
	ix    *index
	res   *Result
	state map[string]bool // visited
}

// visit adds name after what it needs. required: a missing name is
// reported (wanted) or an error (a dependency: the tree is broken);
// otherwise (a soft dependency) it is skipped.
func (c *closer) visit(ref string, required bool, of string) error {
	name := strings.ReplaceAll(ref, "-", "_") // module names; aliases keep their '-'
	if c.state[name] {
		return nil
	}
	c.state[name] = true
	if c.ix.builtin[name] {
		c.res.Builtin = append(c.res.Builtin, name)
		return nil
	}
	if _, ok := c.ix.path[name]; !ok {
		return c.visitAlias(ref, required, of)
	}
	mi, err := c.ix.modinfo(name)
	if err != nil {
		return err
	}
	if err := c.visitAll(mi.softPre, false, name); err != nil {
		return err
	}
	deps, err := c.ix.dependencies(name)
	if err != nil {
		return err
	}
	if err := c.visitAll(deps, true, name); err != nil {
		return err
	}
	c.res.Modules = append(c.res.Modules, name)
	return c.visitAll(mi.softPost, false, name)
}

// visitAll visits refs in order, what module of needs (of: "" for the
// wanted modules).
func (c *closer) visitAll(refs []string, required bool, of string) error {
	for _, ref := range refs {
		if err := c.visit(ref, required, of); err != nil {
			return err
		}
	}
	return nil
}

// visitAlias handles a name that is no module file: an alias of builtin or
// modular providers, or missing.
func (c *closer) visitAlias(name string, required bool, of string) error {
	if c.ix.builtinAliases()[name] {
		c.res.Builtin = append(c.res.Builtin, name)
		return nil
	}
	providers, err := c.ix.resolve(name)
	if err != nil {
		return err
	}
	if err := c.visitAll(providers, false, of); err != nil {
		return err
	}
	switch {
	case len(providers) > 0 || !required:
		return nil
	case of != "":
		return fmt.Errorf("module %s depends on %s, which %s does not have", of, name, c.ix.dir)
	}
	c.res.Missing = append(c.res.Missing, name)
	return nil
}

// builder lays out the archive.
type builder struct {
	cpio *cpioWriter
	dirs map[string]bool
}

func (b *builder) write(ix *index, modules []string, initFile *os.File, extra []File) error {
	for _, d := range []string{"dev", "proc", "sys", "newroot", "etc/slipway-initrd"} {
		if err := b.mkdirAll(d); err != nil {
			return err
		}
	}
	// The kernel opens /dev/console for init's standard streams before
	// /dev is mounted.
	if err := b.cpio.charDev("dev/console", 0o600, 5, 1); err != nil {
		return err
	}
	fi, err := initFile.Stat()
	if err != nil {
		return err
	}
	if err := b.cpio.file("init", 0o755, fi.Size(), initFile); err != nil {
		return err
	}
	var list strings.Builder
	for _, name := range modules {
		p, err := b.module(ix, name)
		if err != nil {
			return err
		}
		list.WriteString(p + "\n")
	}
	if err := b.cpio.file(strings.TrimPrefix(ModuleList, "/"), 0o644, int64(list.Len()), strings.NewReader(list.String())); err != nil {
		return err
	}
	for _, f := range extra {
		if err := b.extra(f); err != nil {
			return err
		}
	}
	return b.cpio.close()
}

// module adds one module, decompressed, at /lib/modules/<version>/<path>
// and returns that path.
func (b *builder) module(ix *index, name string) (string, error) {
	rel := ix.path[name]
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		rel = strings.TrimSuffix(rel, ext)
	}
	dst := path.Join("lib/modules", filepath.Base(ix.dir), rel)
	if err := b.mkdirAll(path.Dir(dst)); err != nil {
		return "", err
	}
	src := filepath.Join(ix.dir, filepath.FromSlash(ix.path[name]))
	if strings.HasSuffix(src, ".ko") {
		f, err := os.Open(src)
		if err != nil {
			return "", err
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		return "/" + dst, b.cpio.file(dst, 0o644, fi.Size(), f)
	}
	data, err := readModule(src)
	if err != nil {
		return "", err
	}
	return "/" + dst, b.cpio.file(dst, 0o644, int64(len(data)), bytes.NewReader(data))
}

func (b *builder) extra(f File) error {
	p := strings.TrimPrefix(path.Clean("/"+f.Path), "/")
	if p == "" || p == "init" {
		return fmt.Errorf("extra file %q: not a file path the initrd can take", f.Path)
	}
	if err := b.mkdirAll(path.Dir(p)); err != nil {
		return err
	}
	mode := f.Mode.Perm()
	if mode == 0 {
		mode = 0o644
	}
	return b.cpio.file(p, mode, int64(len(f.Data)), bytes.NewReader(f.Data))
}

// mkdirAll adds dir and its parents, once each.
func (b *builder) mkdirAll(dir string) error {
	if dir == "." || dir == "" || b.dirs[dir] {
		return nil
	}
	if err := b.mkdirAll(path.Dir(dir)); err != nil {
		return err
	}
	b.dirs[dir] = true
	return b.cpio.dir(dir, 0o755)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
