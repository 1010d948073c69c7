package builder

import (
	"context"
	"fmt"
	"os"

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

// toQcow2 converts the raw image at raw into out and removes raw as soon
// as it is converted. The input is a filesystem this builder just made
// (its files' bytes are a layer's, its metadata ours); both formats are
// explicit so nothing is probed. -W lets the writes land out of order,
// which is what makes a compressed conversion use more than one core.
func toQcow2(ctx context.Context, raw, out string, compression schemas.Compression) error {
	args := []string{"convert", "-q", "-f", "raw", "-O", "qcow2", "-W"}
	if compression != "" {
		args = append(args, "-c", "-o", "compression_type="+string(compression))
	}
	args = append(args, raw, out)
	if _, err := qemuImg.Run(ctx, qemuImg.Heavy(), args...); err != nil {
		os.Remove(out)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	return os.Remove(raw)
}
