package qemu

import (
	"context"
	"fmt"
	"os"
	"strconv"

	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/services/launcher/internal/hostfile"
)

// CreateOverlay makes a qcow2 overlay at path over backing (format backingFormat), for a
// non-persistent disk: the VM writes to the overlay, the cached backing image stays as it
// is. size is the virtual size in bytes; 0 lets qemu-img read it from the backing image,
// which is not possible for a LUKS backing image (its header is encrypted; give the size).
// For a LUKS backing image the overlay is created without opening it (-u), and the VM
// opens it with Disk.BackingSecretFile. The backing path is recorded as given; both paths
// must pass qemuimg.CheckPath (absolute, clean, no protocol prefix). path must not exist.
// qemu-img runs through img, confined (prlimit, nice, empty environment, own process
// group), with img's Light limits; nil is the zero Runner (qemu-img from PATH).
func CreateOverlay(ctx context.Context, img *qemuimg.Runner, path, backing, backingFormat string, size int64) error {
	if img == nil {
		img = &qemuimg.Runner{}
	}
	if err := qemuimg.CheckPath(path); err != nil {
		return fmt.Errorf("overlay: %w", err)
	}
	if err := qemuimg.CheckPath(backing); err != nil {
		return fmt.Errorf("overlay %s: backing: %w", path, err)
	}
	if backingFormat != FormatRaw && backingFormat != FormatQcow2 && backingFormat != FormatLUKS {
		return fmt.Errorf("overlay %s: backing format %q must be raw, qcow2 or luks", path, backingFormat)
	}
	if err := hostfile.Regular(backing); err != nil {
		return fmt.Errorf("overlay %s: backing: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("overlay %s already exists", path)
	}
	args := []string{"create", "-q", "-f", "qcow2", "-F", backingFormat, "-b", backing}
	if backingFormat == FormatLUKS {
		if size <= 0 {
			return fmt.Errorf("overlay %s: the virtual size of a LUKS backing image must be given", path)
		}
		args = append(args, "-u")
	}
	args = append(args, path)
	if size > 0 {
		args = append(args, strconv.FormatInt(size, 10))
	}
	if _, err := img.Run(ctx, img.Light(), args...); err != nil {
		os.Remove(path)
		return fmt.Errorf("overlay %s: %w", path, err)
	}
	return nil
}
