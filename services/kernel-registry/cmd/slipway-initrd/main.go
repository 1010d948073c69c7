// Command slipway-initrd is the /init of the initrd kernel-registry builds
// for a modular kernel (package initrd). It runs as PID 1 in the initramfs:
// it mounts /proc, /sys and /dev (devtmpfs), loads the modules listed in
// /etc/slipway-initrd/modules in order with init_module, reads root=,
// rootfstype=, rootflags=, ro/rw and init= from the kernel command line,
// waits up to 30 s (slipway.rootwait=<seconds>) for the root device,
// mounts it, moves /dev, /proc and /sys onto it, switches root (mount
// --move to /, chroot) and executes the image's init (default
// /.slipway/init).
//
// It says what it does on the console in lines starting "slipway-initrd:".
// On any failure it says why and powers the machine off, so a VM that
// cannot boot ends instead of hanging in a kernel panic loop.
//
// Build it static: CGO_ENABLED=0 go build ./services/kernel-registry/cmd/slipway-initrd.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/slipway/slipway/pkg/kernelargs"
)

const (
	prefix      = "slipway-initrd: "
	moduleList  = "/etc/slipway-initrd/modules"
	newRoot     = "/newroot"
	defaultInit = "/.slipway/init"
	defaultRoot = "/dev/vda"
	rootWait    = 30 * time.Second
)

func main() {
	if os.Getpid() != 1 {
		fmt.Fprintln(os.Stderr, prefix+"this is an initrd's init: it runs as PID 1 only")
		os.Exit(2)
	}
	err := boot()
	// boot only returns on failure: on success the process is the image's init.
	say("cannot boot: %v", err)
	say("powering off")
	unix.Sync()
	if err := unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF); err != nil {
		say("power off failed: %v", err)
	}
	select {} // PID 1 must not exit: the kernel would panic
}

func say(format string, args ...any) {
	fmt.Fprintf(os.Stdout, prefix+format+"\n", args...)
}

// boot does the work; it returns only with an error.
func boot() error {
	if err := mountEarly(); err != nil {
		return err
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		return fmt.Errorf("read the kernel command line: %w", err)
	}
	cfg, err := parseCmdline(string(cmdline))
	if err != nil {
		return err
	}
	loadModules()
	if err := waitForDevice(cfg.root, cfg.rootWait); err != nil {
		return err
	}
	fstype, err := mountRoot(cfg)
	if err != nil {
		return err
	}
	mode := "ro"
	if cfg.flags&unix.MS_RDONLY == 0 {
		mode = "rw"
	}
	say("mounted %s (%s, %s) on %s", cfg.root, fstype, mode, newRoot)
	if err := checkInit(cfg.init); err != nil {
		return err
	}
	return switchRoot(cfg.init)
}

// mountEarly mounts the kernel filesystems the initrd needs, and makes sure
// the standard streams reach the console.
func mountEarly() error {
	for _, m := range []struct {
		fstype, target, data string
		flags                uintptr
	}{
		{"proc", "/proc", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"sysfs", "/sys", "", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		{"devtmpfs", "/dev", "mode=0755", unix.MS_NOSUID},
	} {
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			return err
		}
		if err := unix.Mount(m.fstype, m.target, m.fstype, m.flags, m.data); err != nil && !errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("mount %s on %s: %w", m.fstype, m.target, err)
		}
	}
	var st unix.Stat_t
	if unix.Fstat(1, &st) != nil { // the kernel found no /dev/console for us
		if fd, err := unix.Open("/dev/console", unix.O_RDWR, 0); err == nil {
			for i := 0; i < 3; i++ {
				_ = unix.Dup2(fd, i)
			}
		}
	}
	return nil
}

// config is what the kernel command line asks for.
type config struct {
	root, fstype, data, init string
	flags                    uintptr
	rootWait                 time.Duration
}

// parseCmdline reads root=, rootfstype=, rootflags=, ro, rw and init=; the
// rest is the kernel's or the image init's business.
func parseCmdline(s string) (config, error) {
	c := config{root: defaultRoot, init: defaultInit, flags: unix.MS_RDONLY, rootWait: rootWait}
	for _, arg := range kernelargs.Split(s) {
		k, v, _ := strings.Cut(arg, "=")
		switch k {
		case "root":
			c.root = v
		case "rootfstype":
			c.fstype = v
		case "rootflags":
			c.data = v
		case "ro":
			c.flags |= unix.MS_RDONLY
		case "rw":
			c.flags &^= unix.MS_RDONLY
		case "init":
			c.init = v
		case "slipway.rootwait": // seconds to wait for the root device
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return c, fmt.Errorf("slipway.rootwait=%s: want a number of seconds", v)
			}
			c.rootWait = time.Duration(n) * time.Second
		}
	}
	switch {
	case c.root == "":
		return c, errors.New("root= is empty")
	case !strings.HasPrefix(c.root, "/dev/"):
		return c, fmt.Errorf("root=%s: only device paths such as /dev/vda are supported (no LABEL= or UUID=: there is no udev here)", c.root)
	case !strings.HasPrefix(c.init, "/"):
		return c, fmt.Errorf("init=%s: must be an absolute path", c.init)
	}
	return c, nil
}

// loadModules loads the listed modules in order. A module that fails to
// load is reported, not fatal: an optional one (a CPU-specific crc32c, a
// driver without its device) may fail harmlessly, and a needed one shows
// up as a root device or filesystem that does not come.
func loadModules() {
	data, err := os.ReadFile(moduleList)
	if err != nil {
		if !os.IsNotExist(err) {
			say("read %s: %v", moduleList, err)
		}
		return
	}
	var loaded []string
	for _, p := range strings.Fields(string(data)) {
		// The module's own name: file names may use '-' where the kernel says '_'.
		name := strings.ReplaceAll(strings.TrimSuffix(filepath.Base(p), ".ko"), "-", "_")
		switch err := loadModule(p); {
		case err == nil, errors.Is(err, unix.EEXIST):
			loaded = append(loaded, name)
		default:
			say("module %s not loaded: %v", name, err)
		}
	}
	if len(loaded) > 0 {
		say("loaded %d modules: %s", len(loaded), strings.Join(loaded, " "))
	}
}

func loadModule(path string) error {
	image, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return unix.InitModule(image, "")
}

// waitForDevice waits for the root device node (drivers probe
// asynchronously: virtio_blk's disk may appear after its module loaded).
func waitForDevice(dev string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		fi, err := os.Stat(dev)
		if err == nil {
			if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
				return fmt.Errorf("root=%s is not a block device", dev)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("root device %s did not appear within %s (block devices: %s)", dev, timeout, blockDevices())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// blockDevices lists /sys/class/block for the failure message.
func blockDevices() string {
	entries, err := os.ReadDir("/sys/class/block")
	if err != nil || len(entries) == 0 {
		return "none"
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return strings.Join(names, " ")
}

// mountRoot mounts the root device on newRoot, with rootfstype= or else
// each block filesystem the kernel knows in turn.
func mountRoot(c config) (string, error) {
	if err := os.MkdirAll(newRoot, 0o755); err != nil {
		return "", err
	}
	types := []string{c.fstype}
	if c.fstype == "" {
		types = blockFilesystems()
	}
	var errs []string
	for _, t := range types {
		err := unix.Mount(c.root, newRoot, t, c.flags, c.data)
		if err == nil {
			return t, nil
		}
		errs = append(errs, t+": "+err.Error())
	}
	if len(types) == 0 {
		return "", fmt.Errorf("mount %s: the kernel knows no block filesystem (is the filesystem module in the initrd?)", c.root)
	}
	return "", fmt.Errorf("mount %s on %s: %s", c.root, newRoot, strings.Join(errs, "; "))
}

// blockFilesystems are the filesystems of /proc/filesystems that need a
// device, the builder's (ext4, xfs) first: the kernel's ext4 driver also
// serves ext2 and ext3, and trying those first only fills the log.
func blockFilesystems() []string {
	data, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return nil
	}
	var first, rest []string
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		switch {
		case len(f) != 1:
		case f[0] == "ext4" || f[0] == "xfs":
			first = append(first, f[0])
		default:
			rest = append(rest, f[0])
		}
	}
	return append(first, rest...)
}

// checkInit makes sure the image's init exists before leaving the initrd,
// so its absence is reported instead of a kernel panic.
func checkInit(init string) error {
	fi, err := os.Stat(filepath.Join(newRoot, init))
	switch {
	case err != nil:
		return fmt.Errorf("the root filesystem has no %s (init=): %w", init, err)
	case !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0:
		return fmt.Errorf("%s on the root filesystem is not an executable file", init)
	}
	return nil
}

// switchRoot moves the kernel filesystems into the new root, frees the
// initramfs, makes the new root / and executes init there.
func switchRoot(init string) error {
	for _, m := range []string{"/dev", "/proc", "/sys"} {
		target := filepath.Join(newRoot, m)
		if fi, err := os.Stat(target); err == nil && fi.IsDir() {
			if err := unix.Mount(m, target, "", unix.MS_MOVE, ""); err != nil {
				return fmt.Errorf("move %s to %s: %w", m, target, err)
			}
		} else if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			say("unmount %s: %v", m, err)
		}
	}
	freeInitramfs()
	if err := unix.Chdir(newRoot); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("move %s to /: %w", newRoot, err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	say("starting %s", init)
	err := syscall.Exec(init, []string{init}, os.Environ())
	return fmt.Errorf("exec %s: %w", init, err)
}

// freeInitramfs deletes the initramfs's own files (it lives in RAM), not
// descending into other filesystems, as switch_root does.
func freeInitramfs() {
	var root unix.Stat_t
	if unix.Lstat("/", &root) != nil {
		return
	}
	var walk func(dir string)
	walk = func(dir string) {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return
		}
		for _, e := range entries {
			p := filepath.Join(dir, e.Name())
			var st unix.Stat_t
			if unix.Lstat(p, &st) != nil || st.Dev != root.Dev {
				continue // a mount point: the new root, or what was moved
			}
			if e.IsDir() {
				walk(p)
				_ = unix.Rmdir(p)
			} else {
				_ = unix.Unlink(p)
			}
		}
	}
	walk("/")
}
