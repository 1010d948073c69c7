package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/diskspace"
	"github.com/slipway/slipway/pkg/qcow2"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/fsimage"
	"github.com/slipway/slipway/services/builder/tree"
)

// The ext4 writers Config.Ext4Writer names.
const (
	// Ext4WriterNative lays ext4 out in memory (package ext4): no copy of
	// the tree is written, the upload reads the files' data where the
	// flattener left them. The default.
	Ext4WriterNative = "native"
	// Ext4WriterMkfs copies the tree into a raw file with mkfs.ext4 -d and
	// applies the metadata with debugfs, as ext2 and ext3 are made.
	Ext4WriterMkfs = "mkfs"
)

// layoutExt4 lays out the ext4 image of the tree at root in memory and
// stores it at dest in the command's format, its file data read from
// root. e2fsck checks the image's metadata while the upload runs; the
// upload cannot complete before the check has passed (gatedReader). It
// returns the filesystem's size.
func (s *Service) layoutExt4(ctx context.Context, j *job, cmd schemas.BuilderBuild, dir, root string, t *tree.Tree,
	dest target) (int64, blob.Info, error) {
	// Only the metadata is written, unless qemu-img needs a raw file.
	need := int64(64 << 20)
	if cmd.Compression != "" {
		need += fsimage.Required(t, "ext4") << 20
	}
	if err := diskspace.Ensure(dir, need); err != nil {
		return 0, blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	start := time.Now()
	im, res, err := fsimage.LayoutExt4(root, t, fsimage.Options{Filesystem: "ext4", SizeMiB: cmd.SizeMiB, Label: Label})
	if err != nil {
		return 0, blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	defer im.Close()
	s.log.Info("laid out the filesystem", "image_id", cmd.ImageID, "filesystem", "ext4", "size", res.SizeBytes, "took", time.Since(start))
	check := startCheck(ctx, im, filepath.Join(dir, "disk.check"))
	defer check.stop()
	info, err := s.storeExt4(ctx, j, cmd, im, check, dir, dest)
	if cerr := check.stop(); cerr != nil && !errors.Is(cerr, context.Canceled) {
		return 0, blob.Info{}, failed(schemas.BuilderPhaseMkfs, cerr)
	}
	return res.SizeBytes, info, err
}

// storeExt4 stores the native image at dest in the command's format: raw
// as it is, qcow2 written while it is uploaded (from the image's data
// ranges: nothing is scanned), compressed qcow2 through qemu-img from a
// raw file written first, once the check has passed.
func (s *Service) storeExt4(ctx context.Context, j *job, cmd schemas.BuilderBuild, im *fsimage.Ext4Image, check *asyncCheck,
	dir string, dest target) (blob.Info, error) {
	switch {
	case formatOf(cmd) == schemas.DiskFormatRaw:
		return s.upload(ctx, j, gate(io.NewSectionReader(im, 0, im.Size()), im.Size(), check.wait), im.Size(), dest)
	case cmd.Compression != "":
		if err := check.wait(); err != nil {
			return blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
		}
		raw := filepath.Join(dir, "disk.raw")
		if err := im.WriteFile(raw); err != nil {
			return blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
		}
		return s.storeImage(ctx, j, cmd, raw, dest)
	}
	q, err := qcow2.FromDisk(ctx, ext4Disk{im}, qcow2.Options{KeepZeroClusters: true})
	if err != nil {
		return blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	defer q.Close()
	s.log.Info("laid out the qcow2 image", "image_id", cmd.ImageID, "size", q.Size(), "data_clusters", q.DataClusters())
	return s.upload(ctx, j, gate(q.Reader(), q.Size(), check.wait), q.Size(), dest)
}

// ext4Disk is a native ext4 image as the disk of a qcow2 image.
type ext4Disk struct{ *fsimage.Ext4Image }

func (d ext4Disk) DataRanges() []qcow2.Range {
	rs := d.Ext4Image.DataRanges()
	out := make([]qcow2.Range, len(rs))
	for i, r := range rs {
		out[i] = qcow2.Range(r)
	}
	return out
}

// asyncCheck is an image's e2fsck, run on a goroutine of its own.
type asyncCheck struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func startCheck(ctx context.Context, im *fsimage.Ext4Image, scratch string) *asyncCheck {
	ctx, cancel := context.WithCancel(ctx)
	c := &asyncCheck{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		c.err = im.Check(ctx, scratch)
	}()
	return c
}

// wait waits for the check to end and returns its error.
func (c *asyncCheck) wait() error {
	<-c.done
	return c.err
}

// stop cancels the check unless it has ended, waits for it and returns
// its error (context.Canceled when it was stopped). Calling it again
// returns the same.
func (c *asyncCheck) stop() error {
	c.cancel()
	return c.wait()
}

// gate reads size bytes of r but holds back the last one until allow
// returns nil, and fails with allow's error otherwise: an upload that never
// reads its last byte never completes, so nothing is stored unless allow
// says yes (blob.Store.Put aborts the upload on a read error).
func gate(r io.Reader, size int64, allow func() error) io.Reader {
	return &gatedReader{r: r, left: size, allow: allow}
}

type gatedReader struct {
	r       io.Reader
	left    int64
	allow   func() error
	allowed bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	if !g.allowed && int64(len(p)) >= g.left {
		if err := g.allow(); err != nil {
			return 0, fmt.Errorf("the image's check failed before its upload could complete: %w", err)
		}
		g.allowed = true
	}
	n, err := g.r.Read(p)
	g.left -= int64(n)
	return n, err
}
