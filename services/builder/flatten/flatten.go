// Package flatten applies the layers of a container image, lowest first, to
// a plain directory and returns a tree.Tree describing the result.
//
// It is Slipway's own confined extractor, written instead of
// go-containerregistry's mutate.Extract: every entry is checked against an
// in-memory model of the flattened filesystem before anything touches the
// disk, and every disk operation goes through an os.Root opened on the
// destination, so nothing is ever written outside it.
//
// What a plain directory cannot hold for an unprivileged writer (owners,
// real modes, setuid bits, device nodes, FIFOs, extended attributes) is
// recorded only in the returned tree; on disk, regular files are created
// 0600 (0700 when executable) and directories 0700. Device nodes and FIFOs
// exist only in the tree.
//
// Layer semantics follow the OCI image spec's "applying changesets": a
// `.wh.<name>` entry removes <name> from the lower layers; a
// `.wh..wh..opq` entry hides everything the lower layers put in its
// directory, keeping what the same layer adds whatever the entry order; an
// entry replaces what lower layers have at its path, except that a directory
// over a directory merges. Other `.wh..wh.` entries (AUFS metadata) are
// ignored.
//
// Refused, with an *Error naming the layer and the entry: absolute entry
// paths, paths climbing out of the root, entries below a symlink (Flatten
// never follows a symlink on the host; unlike containerd, which resolves
// such paths inside the root, it refuses them even when the symlink stays
// inside: image builders record real paths, so only crafted layers have
// them), symlinks whose relative target climbs above the root, hard links
// whose target is outside the root, missing, not yet extracted or a
// directory, unknown entry types, and layers beyond the Policy's caps.
//
// Hard links share one inode in the model as on disk: the first name in
// tree.Entries order carries the type and the others are tree.Hardlink
// entries pointing at it, so removing or replacing a name later keeps the
// others valid. A hard link's own header sets the shared owner, mode and
// time, as docker and containerd do. A hard link to a symlink becomes a
// second symlink with the same target. Directories a layer implies without
// an entry of their own are 0755 root:root with time 0.
package flatten

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/services/builder/tree"
)

// Default caps, used when a Policy leaves them zero.
const (
	DefaultMaxBytes   int64 = 64 << 30
	DefaultMaxEntries       = 1_000_000
)

// DevicePolicy says what to do with character and block device entries.
type DevicePolicy int

const (
	// KeepDevices records device nodes in the tree (nothing is created on
	// disk: that needs root). The default.
	KeepDevices DevicePolicy = iota
	// SkipDevices drops device nodes: the path is left empty.
	SkipDevices
	// RefuseDevices fails the flatten on the first device node.
	RefuseDevices
)

// SetuidPolicy says what to do with setuid and setgid bits on files.
type SetuidPolicy int

const (
	// KeepSetuid records setuid and setgid bits as the layer has them.
	// The default.
	KeepSetuid SetuidPolicy = iota
	// StripSetuid clears setuid and setgid on everything but directories
	// (a setgid directory only chooses the group of new files).
	StripSetuid
)

// Policy bounds and shapes a flatten. The zero Policy is the default.
type Policy struct {
	// MaxBytes caps the decompressed bytes read across all layers, counted
	// as they stream, and separately the bytes of file content written
	// (which differ for sparse files). Zero means DefaultMaxBytes.
	MaxBytes int64
	// MaxEntries caps the tar entries across all layers, whiteouts
	// included. Zero means DefaultMaxEntries.
	MaxEntries int
	// Devices applies to character and block devices; FIFOs are always
	// recorded.
	Devices DevicePolicy
	Setuid  SetuidPolicy
}

func (p Policy) withDefaults() Policy {
	if p.MaxBytes <= 0 {
		p.MaxBytes = DefaultMaxBytes
	}
	if p.MaxEntries <= 0 {
		p.MaxEntries = DefaultMaxEntries
	}
	return p
}

// Layer is one image layer: what Flatten needs of a v1.Layer.
type Layer interface {
	// Digest names the layer in errors ("sha256:…").
	Digest() string
	// Uncompressed returns the layer's tar stream. Flatten may read it
	// on another goroutine than its own, never two Reads at once, and
	// closes it after the last Read has returned.
	Uncompressed() (io.ReadCloser, error)
}

// FromV1 adapts a go-containerregistry layer.
func FromV1(l v1.Layer) Layer { return v1Layer{l} }

type v1Layer struct{ l v1.Layer }

func (a v1Layer) Digest() string {
	h, err := a.l.Digest()
	if err != nil {
		return fmt.Sprintf("unknown digest (%v)", err)
	}
	return h.String()
}

func (a v1Layer) Uncompressed() (io.ReadCloser, error) { return a.l.Uncompressed() }

// Error kinds, for errors.Is on an *Error.
var (
	// ErrUnsafe: an entry that would escape the root or write through a
	// symlink.
	ErrUnsafe = errors.New("unsafe layer entry")
	// ErrLimit: a layer over the Policy's caps.
	ErrLimit = errors.New("layer over the limits")
	// ErrUnsupported: an entry type Flatten does not handle, or a device
	// refused by the Policy.
	ErrUnsupported = errors.New("unsupported layer entry")
	// ErrInvalid: a malformed layer (bad tar, empty names, bad whiteouts,
	// out-of-range numbers).
	ErrInvalid = errors.New("invalid layer")
)

// Error is a failure in one layer, and usually one of its entries.
type Error struct {
	// Layer is the 1-based position of the layer, lowest first.
	Layer  int
	Digest string
	// Entry is the entry's name as written in the tar; empty when the
	// failure is not about one entry.
	Entry string
	Err   error
}

func (e *Error) Error() string {
	s := fmt.Sprintf("layer %d (%s)", e.Layer, e.Digest)
	if e.Entry != "" {
		s += fmt.Sprintf(": entry %q", e.Entry)
	}
	return s + ": " + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

// kindError carries a readable message, an error kind for errors.Is and,
// optionally, the error it came from.
type kindError struct {
	kind error
	err  error
	msg  string
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Unwrap() []error {
	if e.err == nil {
		return []error{e.kind}
	}
	return []error{e.kind, e.err}
}

func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// wrapf is errorf keeping err in the chain.
func wrapf(kind, err error, format string, args ...any) error {
	return &kindError{kind: kind, err: err, msg: fmt.Sprintf(format, args...)}
}

// kindOf returns the kind of an error made by errorf, or ErrInvalid.
func kindOf(err error) error {
	var ke *kindError
	if errors.As(err, &ke) {
		return ke.kind
	}
	return ErrInvalid
}

// Flatten applies layers (lowest first) to dst, which must be missing or an
// empty directory, and returns the flattened tree. Cancelling ctx stops it
// promptly. On failure dst is left as it is, partly written: the caller
// removes it. Flatten never writes outside dst.
//
// Each layer's stream is read, decompressed and verified on a goroutine of
// its own, a few buffers ahead of the one parsing it and writing files.
// Even with GOMAXPROCS 1 that pays where there is a second core: the
// decompression runs while the writer waits in the kernel.
func Flatten(ctx context.Context, layers []Layer, dst string, pol Policy) (*tree.Tree, error) {
	return flatten(ctx, layers, dst, pol, true)
}

// flatten is Flatten, reading each layer's stream on a goroutine of its own
// when readAhead is set (see ahead.go), on the flattener's otherwise: the
// baseline the tests and benchmark compare the read-ahead with.
func flatten(ctx context.Context, layers []Layer, dst string, pol Policy, readAhead bool) (*tree.Tree, error) {
	root, err := openEmptyRoot(dst)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	f := newFlattener(ctx, root, pol.withDefaults())
	f.readAhead = readAhead
	for i, l := range layers {
		if err := f.applyLayer(i+1, l); err != nil {
			return nil, err
		}
	}
	if err := f.setTimes(); err != nil {
		return nil, err
	}
	return f.tree(), nil
}

// openEmptyRoot creates dst if needed and insists it is empty, so the model
// Flatten keeps of it matches the disk from the start.
func openEmptyRoot(dst string) (*os.Root, error) {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return nil, fmt.Errorf("flatten: %w", err)
	}
	d, err := os.Open(dst)
	if err != nil {
		return nil, fmt.Errorf("flatten: %w", err)
	}
	names, err := d.Readdirnames(1)
	d.Close()
	if err != nil && err != io.EOF {
		return nil, fmt.Errorf("flatten: %w", err)
	}
	if len(names) > 0 {
		return nil, fmt.Errorf("flatten: destination %s is not empty", dst)
	}
	return os.OpenRoot(dst)
}
