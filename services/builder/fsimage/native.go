package fsimage

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/slipway/slipway/services/builder/ext4"
	"github.com/slipway/slipway/services/builder/tree"
)

// Ext4Image is an ext4 filesystem laid out in memory by package ext4,
// whose file data is read from the flattened directory: see LayoutExt4.
type Ext4Image struct {
	*ext4.Image
	root *os.Root
}

// Close closes the image's files and its hold on the directory.
func (im *Ext4Image) Close() error {
	err := im.Image.Close()
	if rerr := im.root.Close(); err == nil {
		err = rerr
	}
	return err
}

// LayoutExt4 is Build for ext4 without mkfs: the same checks and size
// choice (and the same TooSmallError), then the filesystem is laid out in
// memory by package ext4. Nothing is written: the caller reads the image
// (ReadAt, DataRanges), its file data straight from the files under root,
// which must not change until the image is closed. opts.Filesystem must
// be ext4 or empty.
func LayoutExt4(root string, t *tree.Tree, opts Options) (*Ext4Image, Result, error) {
	if opts.Filesystem == "" {
		opts.Filesystem = "ext4"
	}
	if opts.Filesystem != "ext4" {
		return nil, Result{}, fmt.Errorf("the native layout makes ext4, not %s", opts.Filesystem)
	}
	size, est, err := checkAndSize(t, opts)
	if err != nil {
		return nil, Result{}, err
	}
	uuid, err := parseUUID(opts.UUID)
	if err != nil {
		return nil, Result{}, err
	}
	if err := checkDisk(root, t); err != nil {
		return nil, Result{}, err
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, Result{}, err
	}
	im, err := ext4.New(r, t, ext4.Options{
		SizeBytes: size * MiB, Inodes: est.inodeCount(size), Label: opts.Label, UUID: uuid, Now: time.Now().Unix(),
	})
	if err != nil {
		r.Close()
		return nil, Result{}, nativeTooSmall(err, size, est)
	}
	return &Ext4Image{Image: im, root: r}, Result{SizeBytes: im.Size(), ContentBytes: est.content}, nil
}

// parseUUID turns a checked UUID string (checkLabel) into bytes; empty is
// zero, which lets ext4 pick one.
func parseUUID(s string) ([16]byte, error) {
	var u [16]byte
	if s == "" {
		return u, nil
	}
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		return u, fmt.Errorf("UUID %q is not of the form 01234567-89ab-cdef-0123-456789abcdef", s)
	}
	copy(u[:], b)
	return u, nil
}

// nativeTooSmall turns ext4's running out of space in an image of size
// MiB, which the estimate said would do, into a TooSmallError as Build's
// for mkfs; other errors pass.
func nativeTooSmall(err error, size int64, est sizing) error {
	var space *ext4.SpaceError
	if !errors.As(err, &space) {
		return err
	}
	return &TooSmallError{SizeMiB: size, NeedMiB: max(est.required(), size+size/4+1), Tool: "ext4", Detail: space.Error()}
}

// Check runs e2fsck -fn on the image's metadata, written to the file
// scratch (removed after): e2fsck reads no regular file's data, so the
// metadata alone says whether the filesystem is sound, at the cost of a
// few MiB instead of a copy of the whole image.
func (im *Ext4Image) Check(ctx context.Context, scratch string) error {
	defer os.Remove(scratch)
	if err := im.WriteMetadata(scratch); err != nil {
		return err
	}
	if _, err := run(ctx, nil, "e2fsck", "-fn", scratch); err != nil {
		return fmt.Errorf("ext4 image fails its check: %w", err)
	}
	return nil
}
