// Package blank makes empty disks (DATABLOCK images): a sparse raw file,
// optionally formatted with ext2/3/4 or xfs, optionally converted to qcow2.
//
// mkfs runs directly on the image file, never through a loop device or a
// mount: making an empty disk needs no privilege and touches nothing of the
// host but the file.
package blank

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/qemuimg"
	runenv "github.com/slipway/slipway/pkg/run"
)

// Limits of a blank disk.
const (
	MaxSizeMiB    = 16 << 20 // 16 TiB, the schema's bound
	MinXFSSizeMiB = 300      // mkfs.xfs refuses smaller file systems
)

// Filesystems lists the file systems Create can make ("" makes none).
var Filesystems = []string{"ext2", "ext3", "ext4", "xfs"}

// Create makes an empty disk of sizeMiB in dir and returns its path: raw
// (sparse) or qcow2, with file system fs ("" for none, ext2, ext3, ext4,
// xfs). runner converts to qcow2; nil means a default Runner.
func Create(ctx context.Context, dir string, sizeMiB int64, fs string, format string, runner *qemuimg.Runner) (string, error) {
	if err := validate(sizeMiB, fs, format); err != nil {
		return "", err
	}
	if runner == nil {
		runner = &qemuimg.Runner{}
	}
	dir, err := filepath.Abs(dir) // qemu-img only takes absolute paths
	if err != nil {
		return "", fmt.Errorf("blank disk: %w", err)
	}
	size := sizeMiB << 20
	qcow := filepath.Join(dir, "blank.qcow2")
	if fs == "" && format == "qcow2" {
		// Nothing to write inside: let qemu-img make it directly.
		if err := runner.Create(ctx, qcow, inspect.QCOW2, size); err != nil {
			return "", fmt.Errorf("blank disk: %w", err)
		}
		return qcow, nil
	}
	raw := filepath.Join(dir, "blank.raw")
	if err := sparseFile(raw, size); err != nil {
		return "", err
	}
	if fs != "" {
		if err := mkfs(ctx, raw, fs); err != nil {
			os.Remove(raw)
			return "", err
		}
	}
	if format == "raw" {
		return raw, nil
	}
	defer os.Remove(raw)
	if err := runner.Convert(ctx, raw, inspect.Raw, qcow, inspect.QCOW2, qemuimg.ConvertOptions{}); err != nil {
		os.Remove(qcow)
		return "", fmt.Errorf("blank disk: %w", err)
	}
	return qcow, nil
}

func validate(sizeMiB int64, fs, format string) error {
	if sizeMiB < 1 || sizeMiB > MaxSizeMiB {
		return fmt.Errorf("blank disk: size %d MiB is out of range (1 MiB to 16 TiB)", sizeMiB)
	}
	if format != "raw" && format != "qcow2" {
		return fmt.Errorf("blank disk: format %q is not supported (raw or qcow2)", format)
	}
	switch fs {
	case "", "ext2", "ext3", "ext4":
	case "xfs":
		if sizeMiB < MinXFSSizeMiB {
			return fmt.Errorf("blank disk: xfs needs at least %d MiB, the disk has %d MiB; choose a larger size or ext4", MinXFSSizeMiB, sizeMiB)
		}
	default:
		return fmt.Errorf("blank disk: file system %q is not supported (%s, or none)", fs, strings.Join(Filesystems, ", "))
	}
	return nil
}

// sparseFile creates path with the given size and no data blocks.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("blank disk: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("blank disk: size %s to %d bytes: %w", path, size, err)
	}
	return f.Close()
}

// mkfs formats the image file in place. Its arguments are fixed strings and
// our own path: nothing from a command reaches the command line.
func mkfs(ctx context.Context, path, fs string) error {
	var args []string
	switch fs {
	case "xfs":
		args = []string{"mkfs.xfs", "-q", "-f", path}
	default:
		args = []string{"mkfs." + fs, "-F", "-q", path}
	}
	bin, err := exec.LookPath(args[0])
	if err != nil {
		return fmt.Errorf("blank disk: %s not found (install e2fsprogs or xfsprogs): %w", args[0], err)
	}
	cmd := exec.CommandContext(ctx, bin, args[1:]...)
	cmd.Env = runenv.ChildEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("blank disk: %s: %w", args[0], ctx.Err())
		}
		msg := strings.TrimSpace(string(out))
		if len(msg) > 2048 {
			msg = msg[len(msg)-2048:]
		}
		return fmt.Errorf("blank disk: %s: %w: %s", args[0], err, msg)
	}
	return nil
}
