package fsimage

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/slipway/slipway/services/builder/tree"
)

// MiB is the unit of Options.SizeMiB.
const MiB = 1 << 20

// Options says which filesystem to build and how large.
type Options struct {
	// Filesystem is ext2, ext3, ext4 or xfs.
	Filesystem string
	// SizeMiB is the image size; 0 picks one: the content plus 25% plus
	// slack.
	SizeMiB int64
	// Label is the filesystem label (at most 16 bytes for ext, 12 for xfs).
	Label string
	// UUID is the filesystem UUID; empty lets mkfs pick a random one.
	UUID string
}

// Result describes a built image.
type Result struct {
	// SizeBytes is the image file's (apparent) size.
	SizeBytes int64
	// ContentBytes is the sum of the regular files' sizes, each hard-linked
	// inode counted once.
	ContentBytes int64
}

// Filesystems are the supported filesystem names.
var Filesystems = []string{"ext2", "ext3", "ext4", "xfs"}

// ErrTooSmall is wrapped by the error Build returns when the requested size
// cannot hold the content.
var ErrTooSmall = errors.New("image size too small")

// TooSmallError says the requested size cannot hold the tree.
type TooSmallError struct {
	SizeMiB, NeedMiB int64
	// Tool is set when mkfs itself ran out of space although the estimate
	// said the size would do; Detail is its message.
	Tool, Detail string
}

func (e *TooSmallError) Error() string {
	if e.Tool != "" {
		return fmt.Sprintf("size=%d MiB is too small for this image: its content needs more than %d MiB, at least about %d MiB (%s: %s)",
			e.SizeMiB, e.SizeMiB, e.NeedMiB, e.Tool, e.Detail)
	}
	return fmt.Sprintf("size=%d MiB is too small for this image: its content needs at least %d MiB", e.SizeMiB, e.NeedMiB)
}

// Unwrap lets errors.Is(err, ErrTooSmall) match.
func (e *TooSmallError) Unwrap() error { return ErrTooSmall }

func checkFilesystem(fs string) error {
	for _, f := range Filesystems {
		if f == fs {
			return nil
		}
	}
	return fmt.Errorf("filesystem %q is not supported (%s)", fs, strings.Join(Filesystems, ", "))
}

// Build writes a filesystem image of t, with contents from the directory
// root, to the file out (created or truncated). It needs no root: the image
// is made by mkfs from a directory or protofile and fixed up with debugfs or
// xfs_db, never mounted.
func Build(ctx context.Context, root string, t *tree.Tree, out string, opts Options) (Result, error) {
	size, est, err := checkAndSize(t, opts)
	if err != nil {
		return Result{}, err
	}
	if err := createSparse(out, size*MiB); err != nil {
		return Result{}, err
	}
	if opts.Filesystem == "xfs" {
		err = buildXFS(ctx, root, t, out, size, opts)
	} else {
		err = buildExt(ctx, root, t, out, size, opts)
	}
	if err != nil {
		os.Remove(out) // a half-built image is of no use
		var tooSmall *TooSmallError
		if errors.As(err, &tooSmall) {
			tooSmall.SizeMiB, tooSmall.NeedMiB = size, max(est.required(), size+size/4+1)
		}
		return Result{}, err
	}
	return Result{SizeBytes: size * MiB, ContentBytes: est.content}, nil
}

// checkAndSize checks the options and the tree's names and picks the
// image size in MiB: opts.SizeMiB, or the automatic size when that is 0.
// A size below the estimate's requirement is a TooSmallError.
func checkAndSize(t *tree.Tree, opts Options) (int64, sizing, error) {
	if err := checkFilesystem(opts.Filesystem); err != nil {
		return 0, sizing{}, err
	}
	if err := checkNames(t, opts.Filesystem); err != nil {
		return 0, sizing{}, err
	}
	if err := checkLabel(opts); err != nil {
		return 0, sizing{}, err
	}
	est := estimate(t, opts.Filesystem)
	size := opts.SizeMiB
	switch {
	case size < 0:
		return 0, est, fmt.Errorf("size=%d MiB is not a size", size)
	case size == 0:
		size = est.auto()
	case size < est.required():
		return 0, est, &TooSmallError{SizeMiB: size, NeedMiB: est.required()}
	}
	return size, est, nil
}

// Required is a conservative estimate, in MiB, of the smallest image of
// filesystem fs that holds t. Build refuses smaller sizes.
func Required(t *tree.Tree, fs string) int64 {
	return estimate(t, fs).required()
}

func checkLabel(opts Options) error {
	limit := 16
	if opts.Filesystem == "xfs" {
		limit = 12
	}
	if len(opts.Label) > limit {
		return fmt.Errorf("label %q is longer than %s allows (%d bytes)", opts.Label, opts.Filesystem, limit)
	}
	if i := tree.ControlByte(opts.Label); i >= 0 {
		return fmt.Errorf("label %q holds the control character %#02x", opts.Label, opts.Label[i])
	}
	// The UUID reaches mkfs.xfs inside a -m suboption list, where a comma
	// would start another suboption.
	if opts.UUID != "" && !uuidRe.MatchString(opts.UUID) {
		return fmt.Errorf("UUID %q is not of the form 01234567-89ab-cdef-0123-456789abcdef", opts.UUID)
	}
	return nil
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// checkNames refuses names the tools cannot be told about: debugfs scripts
// and protofiles are line based.
func checkNames(t *tree.Tree, fs string) error {
	for _, e := range t.Entries() {
		if err := tree.CheckEntry(e); err != nil {
			return fmt.Errorf("entry %q cannot be written to %s: %w", e.Path, fs, err)
		}
		if fs == "xfs" {
			if err := checkProtoName(e); err != nil {
				return err
			}
		}
	}
	return nil
}

func createSparse(out string, size int64) error {
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return fmt.Errorf("sizing %s to %d bytes: %w", out, size, err)
	}
	return f.Close()
}
