package qemu

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// SandboxArg is QEMU's seccomp policy, on every command line this package builds (VMs and
// the accelerator probe): obsolete system calls, privilege changes (setuid…), fork/exec
// and resource-control calls (sched_setaffinity, setpriority…) are refused. It needs a
// QEMU built with seccomp, as Debian's is.
const SandboxArg = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"

// User is the unprivileged identity QEMU runs as (numeric: no /etc/passwd entry is
// needed). Supplementary groups are dropped.
type User struct {
	UID, GID uint32
}

// confine checks that every file QEMU opens lies under RunDir, VMDir or one of the
// ImageDirs, symbolic links resolved: disks, their qcow2 backing files, LUKS secret files,
// kernel and initrd. A writable disk must lie in the VM's own directories. The console log
// is not checked: QEMU never opens it, it receives it as an open descriptor.
func (c *Config) confine() error {
	own, err := realDirs("RunDir", []string{c.RunDir, c.VMDir})
	if err != nil {
		return err
	}
	shared, err := realDirs("ImageDirs", c.ImageDirs)
	if err != nil {
		return err
	}
	check := func(what, p string, write bool) error {
		if p == "" {
			return nil
		}
		real, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if under(real, own) {
			return nil
		}
		if under(real, shared) {
			if write {
				return fmt.Errorf("%s %s is writable by the guest but lies in the shared image directories (%s): only the VM's own directory may hold it", what, p, strings.Join(c.ImageDirs, ", "))
			}
			return nil
		}
		return fmt.Errorf("%s %s lies outside the VM's directory and the image directories (%s): QEMU opens no other file", what, p, strings.Join(append(append([]string{}, own...), shared...), ", "))
	}
	if err := check("kernel", c.Kernel, false); err != nil {
		return err
	}
	if err := check("initrd", c.Initrd, false); err != nil {
		return err
	}
	for i, d := range c.Disks {
		what := fmt.Sprintf("disk %d (%s)", i, d.ID)
		if err := check(what, d.Path, !d.ReadOnly); err != nil {
			return err
		}
		if err := check(what+" secret file", d.SecretFile, false); err != nil {
			return err
		}
		if err := check(what+" backing secret file", d.BackingSecretFile, false); err != nil {
			return err
		}
		if err := checkBackingChain(what, d, check); err != nil {
			return err
		}
	}
	return nil
}

// CheckConfined checks, for a process that opens an image outside QEMU (qemu-img run by
// the launcher as root), that the image and its qcow2 backing chain resolve under dirs:
// a header rewritten to name a host file is refused instead of read.
func CheckConfined(path, format string, dirs ...string) error {
	real, err := realDirs("dirs", dirs)
	if err != nil {
		return err
	}
	check := func(what, p string, _ bool) error {
		r, err := filepath.EvalSymlinks(p)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !under(r, real) {
			return fmt.Errorf("%s %s lies outside %s", what, p, strings.Join(dirs, ", "))
		}
		return nil
	}
	if err := check("image", path, false); err != nil {
		return err
	}
	return checkBackingChain("image "+filepath.Base(path), Disk{Path: path, Format: format}, check)
}

// checkBackingChain follows a qcow2 disk's backing files (as recorded in each header, or
// BackingFile) and checks each; a chain deeper than 8 is refused.
func checkBackingChain(what string, d Disk, check func(what, p string, write bool) error) error {
	path, format := d.Path, d.Format
	for depth := 0; format == FormatQcow2; depth++ {
		if depth == 8 {
			return fmt.Errorf("%s: backing chain deeper than 8", what)
		}
		name, bformat, err := qcow2Backing(path)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if depth == 0 && d.BackingFile != "" {
			name = d.BackingFile
		}
		if name == "" {
			return nil
		}
		if !filepath.IsAbs(name) {
			name = filepath.Join(filepath.Dir(path), name)
		}
		if err := check(what+" backing file", name, false); err != nil {
			return err
		}
		path, format = name, bformat
		if format == "" {
			format = sniffFormat(name)
		}
	}
	return nil
}

// sniffFormat tells a qcow2 file by its magic; everything else is treated as a leaf.
func sniffFormat(p string) string {
	f, err := os.Open(p)
	if err != nil {
		return ""
	}
	defer f.Close()
	b := make([]byte, 4)
	if _, err := f.Read(b); err == nil && string(b) == "QFI\xfb" {
		return FormatQcow2
	}
	return ""
}

// realDirs resolves each non-empty directory's symbolic links.
func realDirs(what string, dirs []string) ([]string, error) {
	var out []string
	for _, d := range dirs {
		if d == "" {
			continue
		}
		if !filepath.IsAbs(d) {
			return nil, fmt.Errorf("%s %q must be an absolute path", what, d)
		}
		r, err := filepath.EvalSymlinks(d)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// under reports whether p is inside one of dirs.
func under(p string, dirs []string) bool {
	for _, d := range dirs {
		if p == d || strings.HasPrefix(p, d+string(filepath.Separator)) {
			return true
		}
	}
	return false
}

// handOver gives the VM's own directories (RunDir and VMDir, and everything in them) to
// u, mode 0700 for directories and 0600 for files, so QEMU running as u can use them and
// nobody else but root can.
func (c *Config) handOver(u User) error {
	for _, d := range []string{c.RunDir, c.VMDir} {
		if d == "" {
			continue
		}
		if err := ChownTree(d, int(u.UID), int(u.GID)); err != nil {
			return err
		}
	}
	return nil
}

// ChownTree gives dir and everything in it to uid:gid; directories get mode 0700, files
// 0600 (symbolic links are neither followed nor changed).
func ChownTree(dir string, uid, gid int) error {
	return filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.Type()&fs.ModeSymlink != 0 {
			return nil
		}
		if err := os.Lchown(p, uid, gid); err != nil {
			return err
		}
		mode := os.FileMode(0o600)
		if e.IsDir() {
			mode = 0o700
		}
		return os.Chmod(p, mode)
	})
}

// credential is the SysProcAttr credential for u, or nil when QEMU keeps this process's
// identity. Its only supplementary group is the one /dev/kvm is shared with (kvm on
// Debian), so an unprivileged QEMU can use KVM where the host lets that group.
func credential(u *User) *syscall.Credential {
	if u == nil {
		return nil
	}
	return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: kvmGroups(kvmDevice)}
}

// kvmDevice is KVM's device node.
const kvmDevice = "/dev/kvm"

// kvmGroups is the group that may read and write dev, when that is not root's; none
// otherwise.
func kvmGroups(dev string) []uint32 {
	fi, err := os.Stat(dev)
	if err != nil {
		return []uint32{}
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Gid == 0 || fi.Mode().Perm()&0o060 != 0o060 {
		return []uint32{}
	}
	return []uint32{st.Gid}
}
