package guestinit

import (
	"errors"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// MountFunc is mount(2)'s signature, injectable for tests.
type MountFunc func(source, target, fstype string, flags uintptr, data string) error

type mountPoint struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
}

// earlyMounts are the kernel filesystems a container expects, in order.
var earlyMounts = []mountPoint{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, ""},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755"},
	{"devpts", "/dev/pts", "devpts", unix.MS_NOSUID | unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777"},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755"},
}

// devLinks are the /dev symlinks devtmpfs does not make.
var devLinks = [][2]string{
	{"/proc/self/fd", "/dev/fd"},
	{"/proc/self/fd/0", "/dev/stdin"},
	{"/proc/self/fd/1", "/dev/stdout"},
	{"/proc/self/fd/2", "/dev/stderr"},
}

// mountEarly mounts earlyMounts under root, creating missing mount points. A
// filesystem already mounted there (EBUSY) is fine; other failures (a
// read-only root without the directory, a kernel without the filesystem) are
// logged and the boot goes on.
func (in *Init) mountEarly() {
	for _, m := range earlyMounts {
		target := filepath.Join(in.Root, m.target)
		if err := os.MkdirAll(target, 0o755); err != nil && !errors.Is(err, unix.EROFS) {
			in.logf("mkdir %s: %v", m.target, err)
		}
		err := in.Mount(m.source, target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			in.logf("mount %s on %s: %v", m.fstype, m.target, err)
		}
	}
	for _, l := range devLinks {
		link := filepath.Join(in.Root, l[1])
		if _, err := os.Lstat(link); errors.Is(err, os.ErrNotExist) {
			_ = os.Symlink(l[0], link) // best effort: nothing needs them to boot
		}
	}
}
