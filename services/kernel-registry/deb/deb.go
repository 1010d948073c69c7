// Package deb reads a Debian kernel package (linux-image-*.deb) as one
// stream: the ar archive, its data.tar (xz, zstd, gzip or uncompressed),
// and from it the kernel boot/vmlinuz-<version>, its boot/config-<version>
// and the modules tree lib/modules/<version>/ (usr/lib/modules on merged-usr
// systems), written under a directory. Nothing else is written: no links,
// devices or paths outside those, and sizes and counts are capped, because a
// package is untrusted input.
package deb

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/slipway/slipway/pkg/untar"
	"github.com/slipway/slipway/services/kernel-registry/internal/xz"
)

// ErrNotPackage: the stream is not a Debian package with a kernel.
var ErrNotPackage = errors.New("not a Debian kernel package")

// arMagic starts every ar archive, so every .deb.
const arMagic = "!<arch>\n"

// IsPackage reports whether head (the first bytes of a file) starts an ar
// archive, as a .deb does.
func IsPackage(head []byte) bool { return bytes.HasPrefix(head, []byte(arMagic)) }

// Limits bound what Extract writes. The zero value means the defaults.
type Limits struct {
	MaxBytes   int64 // total bytes written; default 4 GiB
	MaxEntries int   // tar entries read; default 100000
}

func (l Limits) withDefaults() Limits {
	if l.MaxBytes <= 0 {
		l.MaxBytes = 4 << 30
	}
	if l.MaxEntries <= 0 {
		l.MaxEntries = 100000
	}
	return l
}

// Kernel is what Extract found and wrote.
type Kernel struct {
	// Version is the kernel release, from the vmlinuz file name
	// ("6.1.0-56-amd64").
	Version string
	// Image is the path of the kernel file written (dir/boot/vmlinuz-<v>).
	Image string
	// Config is the path of boot/config-<v>, "" when the package has none.
	Config string
	// ModulesDir is dir/lib/modules/<v>, "" when the package ships no
	// modules; Modules counts the module files (.ko, .ko.xz, .ko.zst, .ko.gz).
	ModulesDir string
	Modules    int
	// Bytes is the total written.
	Bytes int64
}

// Extract reads the .deb from r and writes its kernel, config and modules
// under dir (which must exist).
func Extract(r io.Reader, dir string, lim Limits) (Kernel, error) {
	lim = lim.withDefaults()
	br := bufio.NewReaderSize(r, 64<<10)
	name, data, err := findDataMember(br)
	if err != nil {
		return Kernel{}, err
	}
	tr, closeFn, err := openData(name, data)
	if err != nil {
		return Kernel{}, err
	}
	defer closeFn()
	x := &extractor{dir: dir, lim: lim}
	if err := x.run(untar.NewReader(tr, lim.MaxEntries)); err != nil {
		return Kernel{}, err
	}
	return x.result(name)
}

// findDataMember walks the ar archive to its data.tar.* member and returns
// the member's name and a reader of exactly its bytes.
func findDataMember(br *bufio.Reader) (string, io.Reader, error) {
	magic := make([]byte, len(arMagic))
	if _, err := io.ReadFull(br, magic); err != nil || string(magic) != arMagic {
		return "", nil, fmt.Errorf("%w: no ar archive header (a .deb starts with %q)", ErrNotPackage, arMagic)
	}
	for {
		var hdr [60]byte
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) {
				return "", nil, fmt.Errorf("%w: the archive has no data.tar member", ErrNotPackage)
			}
			return "", nil, fmt.Errorf("%w: truncated ar member header: %v", ErrNotPackage, err)
		}
		if string(hdr[58:60]) != "`\n" {
			return "", nil, fmt.Errorf("%w: malformed ar member header", ErrNotPackage)
		}
		name := strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.ParseInt(strings.TrimSpace(string(hdr[48:58])), 10, 64)
		if err != nil || size < 0 {
			return "", nil, fmt.Errorf("%w: ar member %q has a bad size", ErrNotPackage, name)
		}
		if strings.HasPrefix(name, "data.tar") {
			return name, io.LimitReader(br, size), nil
		}
		if _, err := br.Discard(int(size + size%2)); err != nil { // members are 2-byte aligned
			return "", nil, fmt.Errorf("%w: truncated ar member %q: %v", ErrNotPackage, name, err)
		}
	}
}

// openData decompresses the data member by its name's extension.
func openData(name string, r io.Reader) (io.Reader, func(), error) {
	nop := func() {}
	switch path.Ext(name) {
	case ".tar":
		return r, nop, nil
	case ".xz":
		// dpkg compresses with several threads: its blocks declare their
		// sizes and decode in parallel.
		zr, err := xz.NewReader(r, xz.Options{Workers: runtime.GOMAXPROCS(0)})
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrNotPackage, name, err)
		}
		return zr, func() { zr.Close() }, nil
	case ".zst":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrNotPackage, name, err)
		}
		return zr, zr.Close, nil
	case ".gz":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %s: %v", ErrNotPackage, name, err)
		}
		return zr, func() { zr.Close() }, nil
	}
	return nil, nil, fmt.Errorf("%w: member %s: unsupported compression (xz, zst and gz are read)", ErrNotPackage, name)
}

// extractor writes the wanted entries of the data tar.
type extractor struct {
	dir               string
	lim               Limits
	bytes             int64
	image, config     string
	version           string // of the image
	modulesVersion    string
	modules           int
	modulesVersionErr error
}

func (x *extractor) run(tr *untar.Reader) error {
	for {
		h, err := tr.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, untar.ErrTooManyEntries):
			return fmt.Errorf("%w: more than %d entries in data.tar", ErrNotPackage, x.lim.MaxEntries)
		case err != nil:
			return fmt.Errorf("%w: data.tar: %v", ErrNotPackage, err)
		}
		if h.Typeflag != tar.TypeReg {
			continue // directories are made as needed; links and devices are not wanted
		}
		rel, ok := x.wanted(path.Clean(strings.TrimPrefix(h.Name, "./")))
		if !ok {
			continue
		}
		if err := x.write(rel, tr, h.Size); err != nil {
			return err
		}
	}
}

// wanted maps a package path to where it goes under dir: boot/vmlinuz-*,
// boot/config-*, and regular files under (usr/)lib/modules/<version>/.
func (x *extractor) wanted(p string) (string, bool) {
	if strings.HasPrefix(p, "../") || strings.HasPrefix(p, "/") || p == ".." {
		return "", false
	}
	if v, ok := strings.CutPrefix(p, "boot/vmlinuz-"); ok && !strings.Contains(v, "/") {
		if x.image != "" {
			x.modulesVersionErr = fmt.Errorf("%w: more than one kernel (boot/vmlinuz-%s and -%s)", ErrNotPackage, x.version, v)
			return "", false
		}
		x.version, x.image = v, p
		return p, true
	}
	if v, ok := strings.CutPrefix(p, "boot/config-"); ok && !strings.Contains(v, "/") {
		x.config = p
		return p, true
	}
	rest, ok := strings.CutPrefix(strings.TrimPrefix(p, "usr/"), "lib/modules/")
	if !ok {
		return "", false
	}
	v, file, ok := strings.Cut(rest, "/")
	if !ok || v == "" {
		return "", false
	}
	if x.modulesVersion == "" {
		x.modulesVersion = v
	} else if v != x.modulesVersion {
		return "", false // a second tree; the one matching the kernel is checked at the end
	}
	if isModule(file) {
		x.modules++
	}
	return path.Join("lib/modules", v, file), true
}

func isModule(name string) bool {
	for _, ext := range []string{".ko", ".ko.xz", ".ko.zst", ".ko.gz"} {
		if strings.HasSuffix(name, ext) {
			return true
		}
	}
	return false
}

// write copies one file under dir, within the byte cap.
func (x *extractor) write(rel string, r io.Reader, size int64) error {
	if x.bytes+size > x.lim.MaxBytes {
		return fmt.Errorf("%w: the kernel and modules exceed %d MiB", ErrNotPackage, x.lim.MaxBytes>>20)
	}
	dst := filepath.Join(x.dir, filepath.FromSlash(rel))
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	n, err := untar.WriteFile(dst, r, size, 0o644)
	x.bytes += n
	switch {
	case errors.Is(err, untar.ErrTruncated):
		return fmt.Errorf("%w: %s: data.tar %v", ErrNotPackage, rel, err)
	case err != nil:
		return fmt.Errorf("write %s: %w", rel, err)
	}
	return nil
}

// result checks that a kernel was found and that its modules are its own.
func (x *extractor) result(member string) (Kernel, error) {
	if x.modulesVersionErr != nil {
		return Kernel{}, x.modulesVersionErr
	}
	if x.image == "" {
		return Kernel{}, fmt.Errorf("%w: %s holds no boot/vmlinuz-* (is it a linux-image package?)", ErrNotPackage, member)
	}
	k := Kernel{Version: x.version, Image: filepath.Join(x.dir, filepath.FromSlash(x.image)), Bytes: x.bytes}
	if x.config != "" {
		k.Config = filepath.Join(x.dir, filepath.FromSlash(x.config))
	}
	if x.modulesVersion != "" {
		if x.modulesVersion != x.version {
			return Kernel{}, fmt.Errorf("%w: the modules are for %s, the kernel is %s", ErrNotPackage, x.modulesVersion, x.version)
		}
		k.ModulesDir = filepath.Join(x.dir, "lib", "modules", x.version)
		k.Modules = x.modules
	}
	return k, nil
}
