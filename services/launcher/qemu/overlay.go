package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
)

// CreateOverlay makes a qcow2 overlay at path over backing (format backingFormat), for a
// non-persistent disk: the VM writes to the overlay, the cached backing image stays as it
// is. size is the virtual size in bytes; 0 lets qemu-img read it from the backing image,
// which is not possible for a LUKS backing image (its header is encrypted; give the size).
// For a LUKS backing image the overlay is created without opening it (-u), and the VM
// opens it with Disk.BackingSecretFile. The backing path is recorded as given: pass an
// absolute path. path must not exist.
func CreateOverlay(ctx context.Context, path, backing, backingFormat string, size int64) error {
	if backingFormat != FormatRaw && backingFormat != FormatQcow2 && backingFormat != FormatLUKS {
		return fmt.Errorf("overlay %s: backing format %q must be raw, qcow2 or luks", path, backingFormat)
	}
	if err := regularFile(backing); err != nil {
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
	cmd := exec.CommandContext(ctx, "qemu-img", args...)
	cmd.Env = []string{} // qemu-img needs nothing from ours (no S3 key, no KEK)
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("overlay %s: qemu-img: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
