package builder

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/qcow2"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/schemas"
)

// qemuImg runs qemu-img as every service does (pkg/qemuimg: prlimit, nice,
// an empty environment, its own process group).
var qemuImg = &qemuimg.Runner{}

// checkFormat refuses a format or compression the builder cannot write.
// The schema limits format to raw and qcow2; it cannot tie compression
// to qcow2.
func checkFormat(cmd schemas.BuilderBuild) error {
	if cmd.Compression != "" && cmd.Format != schemas.DiskFormatQcow2 {
		return fmt.Errorf("%w: compression %s applies to qcow2 only, not to format %s", errInvalid, cmd.Compression, formatOf(cmd))
	}
	return nil
}

// formatOf is the command's output format, raw when absent.
func formatOf(cmd schemas.BuilderBuild) schemas.DiskFormat {
	if cmd.Format == "" {
		return schemas.DiskFormatRaw
	}
	return cmd.Format
}

// filesystemOf is the command's filesystem, DefaultFilesystem when absent.
func filesystemOf(cmd schemas.BuilderBuild) string {
	if cmd.Filesystem == "" {
		return DefaultFilesystem
	}
	return string(cmd.Filesystem)
}

// storeImage stores the raw image at raw at dest in the command's format,
// and removes it. A raw image goes up as it is. A qcow2 image is written
// while it is uploaded (pkg/qcow2): no second copy of the disk is written
// and read back, and the upload starts as soon as the data is mapped. A
// compressed qcow2 is qemu-img's work, converted first (still in the mkfs
// phase). A failure is a jobError of the phase it happened in.
func (s *Service) storeImage(ctx context.Context, j *job, cmd schemas.BuilderBuild, raw string, dest target) (blob.Info, error) {
	defer os.Remove(raw)
	switch {
	case formatOf(cmd) == schemas.DiskFormatRaw:
		return s.uploadFile(ctx, j, raw, dest)
	case cmd.Compression != "":
		disk := filepath.Join(filepath.Dir(raw), "disk.qcow2")
		if err := toQcow2(ctx, raw, disk, cmd.Compression); err != nil {
			return blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
		}
		defer os.Remove(disk)
		return s.uploadFile(ctx, j, disk, dest)
	}
	start := time.Now()
	// ext2 and ext4 images hold no allocated cluster of zeros (mke2fs -d
	// makes zero blocks holes, the ext4 journal is left to the holes too:
	// fsimage's TestExtLeavesNoZeroClusters), so reading the data to find
	// them would find none (unless the work directory's file system
	// reports no holes: pkg/qcow2 reads then); ext3's journal and xfs
	// have some.
	fs := filesystemOf(cmd)
	opts := qcow2.Options{KeepZeroClusters: fs == "ext4" || fs == "ext2"}
	im, err := qcow2.Open(ctx, raw, opts)
	if err != nil {
		return blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	defer im.Close()
	s.log.Info("laid out the qcow2 image", "image_id", cmd.ImageID, "size", im.Size(), "data_clusters", im.DataClusters(), "took", time.Since(start))
	return s.upload(ctx, j, im.Reader(), im.Size(), dest)
}

// toQcow2 converts the raw image at raw into out, compressed, and removes
// raw as soon as it is converted. The input is a filesystem this builder
// just made (its files' bytes are a layer's, its metadata ours); both
// formats are explicit so nothing is probed. -W lets the writes land out
// of order, which is what makes a compressed conversion use more than one
// core.
func toQcow2(ctx context.Context, raw, out string, compression schemas.Compression) error {
	args := []string{"convert", "-q", "-f", "raw", "-O", "qcow2", "-W", "-c", "-o", "compression_type=" + string(compression), raw, out}
	if _, err := qemuImg.Run(ctx, qemuImg.Heavy(), args...); err != nil {
		os.Remove(out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return os.Remove(raw)
}
