package firecracker

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/slipway/slipway/services/launcher/internal/hostfile"
)

// Validate checks a configuration against Firecracker's limits and the files it names:
// the kernel is an uncompressed x86_64 ELF, the initrd and drives exist, drives are raw
// images (not qcow2, not LUKS), at most one root drive, unique IDs, 1–32 vCPUs, at least
// 128 MiB. All problems are reported together.
func Validate(c *VMConfig) error {
	errs := Problems(c)
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("firecracker: %w", errors.Join(errs...))
}

// Problems is what Validate finds, one error per problem; nil when none.
func Problems(c *VMConfig) []error {
	var errs []error
	if err := CheckKernel(c.BootSource.KernelImagePath); err != nil {
		errs = append(errs, err)
	}
	return append(errs, ConfigProblems(c)...)
}

// ConfigProblems is Problems without the kernel's check, for a caller that
// knows the kernel is missing and has said so.
func ConfigProblems(c *VMConfig) []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if p := c.BootSource.InitrdPath; p != "" {
		if err := hostfile.Regular(p); err != nil {
			add("initrd: %v", err)
		}
	}
	if n := c.MachineConfig.VcpuCount; n < 1 || n > MaxVCPUs {
		add("vcpu_count %d must be 1 to %d", n, MaxVCPUs)
	}
	if m := c.MachineConfig.MemSizeMiB; m < MinMemMiB {
		add("mem_size_mib %d is below %d", m, MinMemMiB)
	}
	errs = append(errs, checkDrives(c.Drives)...)
	return append(errs, checkNICs(c.NetworkInterfaces)...)
}

func checkDrives(drives []DriveConfig) []error {
	var errs []error
	ids := map[string]bool{}
	roots := 0
	for _, d := range drives {
		if !idRe.MatchString(d.DriveID) {
			errs = append(errs, fmt.Errorf("drive_id %q must be letters, digits and '_'", d.DriveID))
		}
		if ids[d.DriveID] {
			errs = append(errs, fmt.Errorf("drive_id %s is used twice", d.DriveID))
		}
		ids[d.DriveID] = true
		if d.IsRootDevice {
			roots++
		}
		if err := checkRaw(d.PathOnHost); err != nil {
			errs = append(errs, fmt.Errorf("drive %s: %w", d.DriveID, err))
		}
	}
	if roots > 1 {
		errs = append(errs, fmt.Errorf("%d drives are root devices; at most one may be", roots))
	}
	return errs
}

func checkNICs(nics []NetworkInterface) []error {
	var errs []error
	for _, n := range nics {
		if !idRe.MatchString(n.IfaceID) {
			errs = append(errs, fmt.Errorf("iface_id %q must be letters, digits and '_'", n.IfaceID))
		}
		if n.HostDevName == "" {
			errs = append(errs, fmt.Errorf("network interface %s: host_dev_name (a tap device) is required", n.IfaceID))
		}
		if n.GuestMac != "" && !macRe.MatchString(n.GuestMac) {
			errs = append(errs, fmt.Errorf("network interface %s: guest_mac %q must be six hex bytes separated by ':'", n.IfaceID, n.GuestMac))
		}
	}
	return errs
}

// ELF constants for the header check.
const (
	elfClass64  = 2
	elfData2LSB = 1
	etExec      = 2
	emX86_64    = 62
	emAArch64   = 183
)

// CheckKernel checks that path is an uncompressed x86_64 ELF executable (a vmlinux), the
// only kernel Firecracker boots here, naming what it is otherwise.
func CheckKernel(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer f.Close()
	hdr := make([]byte, 0x240)
	n, err := io.ReadFull(f, hdr)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("kernel %s: %w", path, err)
	}
	hdr = hdr[:n]
	switch {
	case n >= 0x206 && string(hdr[0x202:0x206]) == "HdrS":
		return fmt.Errorf("kernel %s is a bzImage: Firecracker boots an uncompressed ELF vmlinux (extract it, or use kernel-registry's vmlinux)", path)
	case n < 20 || !bytes.Equal(hdr[:4], []byte("\x7fELF")):
		return fmt.Errorf("kernel %s is not an ELF vmlinux", path)
	case hdr[4] != elfClass64 || hdr[5] != elfData2LSB:
		return fmt.Errorf("kernel %s is not a 64-bit little-endian ELF", path)
	}
	switch m := binary.LittleEndian.Uint16(hdr[18:20]); m {
	case emX86_64:
	case emAArch64:
		return fmt.Errorf("kernel %s is for aarch64, not x86_64", path)
	default:
		return fmt.Errorf("kernel %s is for ELF machine %d, not x86_64", path, m)
	}
	if binary.LittleEndian.Uint16(hdr[16:18]) != etExec {
		return fmt.Errorf("kernel %s is an ELF file but not an executable (a module or object?)", path)
	}
	return nil
}

// checkRaw refuses formats Firecracker would read as raw bytes.
func checkRaw(path string) error {
	if err := hostfile.Regular(path); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	magic := make([]byte, 6)
	if _, err := io.ReadFull(f, magic); err != nil {
		return nil // shorter than a header: no format to detect
	}
	switch {
	case bytes.HasPrefix(magic, []byte("QFI\xfb")):
		return fmt.Errorf("%s is a qcow2 image: Firecracker reads raw images only (convert it)", path)
	case bytes.Equal(magic, []byte("LUKS\xba\xbe")):
		return fmt.Errorf("%s is a LUKS image: Firecracker cannot open LUKS (decrypt it on the host first)", path)
	}
	return nil
}
