// Package uec reads an Ubuntu Enterprise Cloud (UEC) tarball: a gzipped
// tar holding a kernel (*-vmlinuz*, an AKI), a ramdisk (*-initrd*, an ARI)
// and a raw disk (*.img, an AMI), with other files (README.files, *-loader,
// *-floppy) that are skipped.
//
// The tarball is untrusted. Extract writes only the three pieces, under
// names of its own (kernel, ramdisk, disk.img) in a directory the caller
// made: an entry's name never becomes a path. An entry whose name is
// absolute or climbs out with "..", any link, device or FIFO, a second
// kernel, ramdisk or disk, a missing piece, more entries or bytes than the
// limits allow, and a truncated or corrupt stream each end the extraction
// with an error that names the problem; what was written is removed.
package uec

import (
	"archive/tar"
	"bufio"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	"github.com/klauspost/compress/gzip"

	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/untar"
)

// ErrHostile: the tarball is not a UEC tarball Slipway accepts.
var ErrHostile = errors.New("not an acceptable UEC tarball")

// Role is what a member is: the kernel, the ramdisk or the disk.
type Role string

// The three pieces, and the file names Extract gives them.
const (
	Kernel  Role = "kernel"
	Ramdisk Role = "ramdisk"
	Disk    Role = "disk.img"
)

// Limits bound what Extract reads and writes. The zero value means the
// defaults.
type Limits struct {
	MaxBytes   int64 // total bytes of the three pieces; default 64 GiB
	MaxEntries int   // tar entries read; default 1000
}

func (l Limits) withDefaults() Limits {
	defaults.Fill(&l, Limits{MaxBytes: 64 << 30, MaxEntries: 1000})
	return l
}

// Piece is one extracted member.
type Piece struct {
	Member string // its name in the tarball (for messages, never a path)
	Path   string // where Extract wrote it
	Size   int64
}

// Set is what Extract found: one piece per role.
type Set map[Role]Piece

// RoleOf classifies a member's base name by Ubuntu's UEC naming; ok is
// false for a file that is none of the three.
func RoleOf(base string) (Role, bool) {
	switch {
	case strings.Contains(base, "-vmlinuz"):
		return Kernel, true
	case strings.Contains(base, "-initrd"):
		return Ramdisk, true
	case strings.HasSuffix(base, ".img"):
		return Disk, true
	}
	return "", false
}

// Extract reads the gzipped tar r and writes its kernel, ramdisk and disk
// under dir (which must exist and be empty of those names).
func Extract(r io.Reader, dir string, lim Limits) (Set, error) {
	zr, err := gzip.NewReader(bufio.NewReaderSize(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("%w: not gzip: %v", ErrHostile, err)
	}
	defer zr.Close()
	x := &extractor{dir: dir, lim: lim.withDefaults(), set: Set{}}
	err = x.run(untar.NewReader(zr, x.lim.MaxEntries))
	if err == nil {
		err = x.complete()
	}
	if err != nil {
		x.removeAll()
		return nil, err
	}
	return x.set, nil
}

type extractor struct {
	dir   string
	lim   Limits
	set   Set
	bytes int64
}

func (x *extractor) run(tr *untar.Reader) error {
	for {
		h, err := tr.Next()
		switch {
		case errors.Is(err, io.EOF):
			return nil
		case errors.Is(err, untar.ErrTooManyEntries):
			return fmt.Errorf("%w: more than %d entries", ErrHostile, x.lim.MaxEntries)
		case err != nil:
			return fmt.Errorf("%w: reading the tar: %v", ErrHostile, err)
		}
		name, err := checkName(h.Name)
		if err != nil {
			return err
		}
		switch h.Typeflag {
		case tar.TypeDir:
			continue
		case tar.TypeReg:
		default:
			return fmt.Errorf("%w: entry %q is a %s: a UEC tarball holds regular files only", ErrHostile, name, typeName(h.Typeflag))
		}
		role, ok := RoleOf(path.Base(name))
		if !ok {
			continue // README.files, *-loader, *-floppy
		}
		if err := x.write(role, name, tr, h.Size); err != nil {
			return err
		}
	}
}

// checkName refuses a name that is absolute or climbs out of the tarball.
func checkName(name string) (string, error) {
	clean := path.Clean(strings.TrimPrefix(name, "./"))
	switch {
	case name == "" || strings.ContainsRune(name, 0):
		return "", fmt.Errorf("%w: an entry has an empty or NUL-bearing name", ErrHostile)
	case strings.HasPrefix(name, "/"):
		return "", fmt.Errorf("%w: entry %q has an absolute path", ErrHostile, name)
	case clean == ".." || strings.HasPrefix(clean, "../") || strings.Contains(name, "/../") || strings.HasSuffix(name, "/.."):
		return "", fmt.Errorf("%w: entry %q climbs out of the tarball (..)", ErrHostile, name)
	}
	return clean, nil
}

func typeName(t byte) string {
	switch t {
	case tar.TypeSymlink:
		return "symbolic link"
	case tar.TypeLink:
		return "hard link"
	case tar.TypeChar, tar.TypeBlock:
		return "device"
	case tar.TypeFifo:
		return "FIFO"
	}
	return fmt.Sprintf("tar entry of type %q", t)
}

// write copies one piece to dir/<role>, within the byte cap, which is
// checked against the header before anything is written.
func (x *extractor) write(role Role, member string, r io.Reader, size int64) error {
	if prev, ok := x.set[role]; ok {
		return fmt.Errorf("%w: two %ss: %q and %q", ErrHostile, roleWord(role), prev.Member, member)
	}
	if size < 0 || x.bytes+size > x.lim.MaxBytes {
		return fmt.Errorf("%w: %q is %d bytes: the pieces would exceed the limit of %d MiB", ErrHostile, member, size, x.lim.MaxBytes>>20)
	}
	dst := filepath.Join(x.dir, string(role))
	n, err := untar.WriteFile(dst, r, size, 0o600)
	if !errors.Is(err, fs.ErrExist) {
		x.set[role] = Piece{Member: member, Path: dst, Size: size} // ours: removed on failure
	}
	x.bytes += n
	switch {
	case errors.Is(err, untar.ErrTruncated):
		return fmt.Errorf("%w: %q is %v", ErrHostile, member, err)
	case err != nil:
		return fmt.Errorf("write the %s %q: %w", roleWord(role), member, err)
	}
	return nil
}

// complete checks that the three pieces are there.
func (x *extractor) complete() error {
	var missing []string
	for _, c := range []struct {
		role    Role
		pattern string
	}{{Kernel, "*-vmlinuz*"}, {Ramdisk, "*-initrd*"}, {Disk, "*.img"}} {
		if _, ok := x.set[c.role]; !ok {
			missing = append(missing, fmt.Sprintf("no %s (%s)", roleWord(c.role), c.pattern))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: %s", ErrHostile, strings.Join(missing, ", "))
	}
	return nil
}

// removeAll deletes what was written.
func (x *extractor) removeAll() {
	for _, p := range x.set {
		_ = os.Remove(p.Path)
	}
}

func roleWord(r Role) string {
	if r == Disk {
		return "disk"
	}
	return string(r)
}
