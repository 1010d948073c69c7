// Package firecracker writes and checks the configuration of a Firecracker microVM (the
// JSON `firecracker --config-file` reads: boot-source, drives, machine-config,
// network-interfaces) for a kernel and disk images, and boots it where a firecracker
// binary and /dev/kvm exist.
//
// Firecracker boots only an uncompressed ELF vmlinux (x86_64 here) through the Linux
// 64-bit boot protocol, reads raw disk images only (no qcow2, no LUKS: decrypt or convert
// first), and takes at most 32 vCPUs; below 128 MiB a distribution kernel does not boot.
package firecracker

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/slipway/slipway/schemas"
)

// Limits checked by Validate.
const (
	MaxVCPUs  = 32
	MinMemMiB = 128
)

// DefaultBootArgs is the command line used when none is given: the serial console (the
// firecracker process's stdout), reboot through the keyboard controller (Firecracker's
// way to exit), no PCI (Firecracker has virtio-mmio only).
const DefaultBootArgs = "console=ttyS0 reboot=k panic=1 pci=off"

// Kernel describes the kernel to boot, with what kernel-registry found out about it.
type Kernel struct {
	Path       string // the kernel image on this host
	InitrdPath string // "" = none
	Format     string // "elf" or "bzimage" as kernel-registry reports it; "" = unknown (the file is checked)
	Arch       string // "x86_64", "aarch64"…; "" = unknown (the file is checked)
	// Unfit, when set, is kernel-registry's firecracker_reason for a kernel that does not
	// fit Firecracker.
	Unfit string
}

// Drive is a disk image for the VM.
type Drive struct {
	ID       string // letters, digits, '_'; default "rootfs" for the root drive, else "drive<n>"
	Path     string
	Format   string // must be "raw" (or "", meaning raw)
	Root     bool   // the root device (at most one)
	ReadOnly bool
}

// NIC is a network interface backed by a host tap device.
type NIC struct {
	ID          string // default "eth<n>"
	HostDevName string // the tap device
	GuestMAC    string // "" = Firecracker's choice
}

// VMConfig is Firecracker's --config-file document, as the contract
// describes it (schemas.FirecrackerConfig, the config of the launcher's
// firecracker query); field names follow Firecracker's API.
type VMConfig schemas.FirecrackerConfig

// The parts of a VMConfig.
type (
	// BootSource is the kernel, its command line and initrd.
	BootSource = schemas.FirecrackerBootSource
	// DriveConfig is one block device.
	DriveConfig = schemas.FirecrackerDrive
	// MachineConfig is the vCPU count and memory size.
	MachineConfig = schemas.FirecrackerMachine
	// NetworkInterface is one virtio-net device on a tap.
	NetworkInterface = schemas.FirecrackerNetworkInterface
)

var (
	idRe  = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
	macRe = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
)

// Config builds and validates the configuration for kernel k, drives, vcpus, memory and
// the kernel command line (DefaultBootArgs when empty; give root=/dev/vda for a root
// drive, Firecracker does not add it).
func Config(k Kernel, drives []Drive, vcpus int, memMiB int64, bootArgs string, nics ...NIC) (*VMConfig, error) {
	if err := kernelFacts(k); err != nil {
		return nil, err
	}
	for i, d := range drives {
		if d.Format != "" && d.Format != "raw" {
			return nil, fmt.Errorf("firecracker: drive %d (%s): format %s: Firecracker reads raw images only", i, d.Path, d.Format)
		}
	}
	c := Build(k, drives, vcpus, memMiB, bootArgs, nics...)
	if err := Validate(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Build is Config without any check: the configuration as given, for a
// caller that reports Problems itself. Drive formats are not looked at.
func Build(k Kernel, drives []Drive, vcpus int, memMiB int64, bootArgs string, nics ...NIC) *VMConfig {
	if bootArgs == "" {
		bootArgs = DefaultBootArgs
	}
	c := &VMConfig{
		BootSource:    BootSource{KernelImagePath: abs(k.Path), BootArgs: bootArgs, InitrdPath: abs(k.InitrdPath)},
		MachineConfig: MachineConfig{VcpuCount: int64(vcpus), MemSizeMiB: memMiB},
		Drives:        []DriveConfig{},
	}
	for i, d := range drives {
		id := d.ID
		if id == "" {
			id = fmt.Sprintf("drive%d", i)
			if d.Root {
				id = "rootfs"
			}
		}
		c.Drives = append(c.Drives, DriveConfig{DriveID: id, PathOnHost: abs(d.Path), IsRootDevice: d.Root, IsReadOnly: d.ReadOnly})
	}
	for i, n := range nics {
		id := n.ID
		if id == "" {
			id = fmt.Sprintf("eth%d", i)
		}
		c.NetworkInterfaces = append(c.NetworkInterfaces, NetworkInterface{IfaceID: id, HostDevName: n.HostDevName, GuestMac: n.GuestMAC})
	}
	return c
}

// kernelFacts refuses a kernel kernel-registry already found unfit.
func kernelFacts(k Kernel) error {
	switch {
	case k.Unfit != "":
		return fmt.Errorf("firecracker: kernel %s does not fit Firecracker: %s", k.Path, k.Unfit)
	case k.Format == "bzimage":
		return fmt.Errorf("firecracker: kernel %s is a bzImage: Firecracker boots an uncompressed ELF vmlinux (kernel-registry keeps the vmlinux of a bzImage kernel)", k.Path)
	case k.Format != "" && k.Format != "elf":
		return fmt.Errorf("firecracker: kernel %s: unknown format %q", k.Path, k.Format)
	case k.Arch != "" && k.Arch != "x86_64":
		return fmt.Errorf("firecracker: kernel %s is for %s, not x86_64", k.Path, k.Arch)
	}
	return nil
}

func abs(p string) string {
	if p == "" {
		return ""
	}
	if a, err := filepath.Abs(p); err == nil {
		return a
	}
	return p
}

// JSON returns the configuration as Firecracker reads it.
func (c *VMConfig) JSON() ([]byte, error) { return json.MarshalIndent(c, "", "  ") }

// WriteFile writes the configuration to path (mode 0600).
func (c *VMConfig) WriteFile(path string) error {
	b, err := c.JSON()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}
