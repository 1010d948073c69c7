package launcher

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

// osKernel is the KERNEL image OS/KERNEL_DS names and what kernel-registry
// found out about it (kernelFacts).
func (s *Service) osKernel(ctx context.Context, o vmtemplate.OS) (*schemas.Image, *schemas.Kernel, error) {
	kimg, err := s.showFile(ctx, o.KernelDS, "OS/KERNEL_DS", "KERNEL")
	if err != nil {
		return nil, nil, err
	}
	facts, err := s.kernelFacts(ctx, kimg.ID)
	if err != nil {
		return nil, nil, fmt.Errorf("OS/KERNEL_DS: %w", err)
	}
	return kimg, facts, nil
}

// kernelFacts asks kernel-registry about a KERNEL image (docs/boot.md). A
// kernel it does not know, or no kernel-registry at all, gives nil: the
// image then boots as it is, with the Linux boot protocol.
func (s *Service) kernelFacts(ctx context.Context, id int64) (*schemas.Kernel, error) {
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	k, err := bus.Ask(ctx, s.bus, schemas.QryKernelRegistryShow, schemas.KernelRegistryShowRequest{ID: &id})
	if err == nil {
		return &k, nil
	}
	code := bus.ErrorCode(err)
	if code == bus.CodeNotFound || code == bus.CodeUnavailable {
		s.log.Info("kernel-registry has no facts about the kernel; booting the image as it is", "kernel", id, "err", err)
		return nil, nil
	}
	return nil, fmt.Errorf("ask kernel-registry about kernel %d: %w", id, err)
}

// prepareBoot chooses the kernel (and how to enter it), the initrd and
// the command line.
func (s *Service) prepareBoot(ctx context.Context, spec *vmtemplate.Spec, plan *bootPlan) error {
	os := spec.OS
	plan.QEMU.Append = kernelCmdline(os, "")
	if os.KernelDS.IsZero() {
		if !os.InitrdDS.IsZero() {
			return errors.New("OS/INITRD_DS needs OS/KERNEL_DS: an initrd without a kernel cannot boot")
		}
		plan.QEMU.Append = "" // firmware boot from the disks: no kernel to pass it to
		return nil
	}
	kimg, facts, err := s.osKernel(ctx, os)
	if err != nil {
		return err
	}
	if err := s.chooseKernel(ctx, kimg, facts, os.BootMode, plan); err != nil {
		return err
	}
	iimg, attr, err := s.initrdFor(ctx, os, kimg, facts)
	if err != nil || iimg == nil {
		return err
	}
	if plan.QEMU.Initrd, err = s.cache.image(ctx, iimg); err != nil {
		return fmt.Errorf("%s: %w", attr, err)
	}
	plan.Initrd = &schemas.VMFile{ImageID: iimg.ID, Name: iimg.Name}
	return nil
}

// kernelCmdline is the command line a kernel boots with: the launcher's
// base, extra (options of one hypervisor) and KERNEL_CMD last, so the
// template can override.
func kernelCmdline(o vmtemplate.OS, extra string) string {
	root := o.Root
	if root == "" {
		root = vmtemplate.DefaultRoot
	}
	line := fmt.Sprintf(baseCmdline, root)
	if extra != "" {
		line += " " + extra
	}
	return strings.TrimSpace(line + " " + o.KernelCmd)
}

// initrdFor resolves the initrd kernel kimg boots with: OS/INITRD_DS, else
// the kernel's own initrd (kernel-registry's facts); nil when none. attr
// names where it came from, for errors.
func (s *Service) initrdFor(ctx context.Context, o vmtemplate.OS, kimg *schemas.Image, facts *schemas.Kernel) (img *schemas.Image, attr string, err error) {
	initrd := o.InitrdDS
	attr = "OS/INITRD_DS"
	if initrd.IsZero() && facts != nil && facts.Initrd != nil {
		initrd = vmtemplate.FileRef{ImageID: facts.Initrd}
		attr = fmt.Sprintf("the initrd of kernel %d (RAMDISK image %d)", kimg.ID, *facts.Initrd)
	}
	if initrd.IsZero() {
		return nil, attr, nil
	}
	img, err = s.showFile(ctx, initrd, attr, "RAMDISK")
	return img, attr, err
}

// vmlinuxKey names in the cache the vmlinux kernel-registry kept of a
// bzImage kernel.
func vmlinuxKey(kimg *schemas.Image) string {
	return "vmlinux-" + strconv.FormatInt(kimg.ID, 10) + "-" + kimg.SHA256
}

// chooseKernel picks PVH or the Linux boot protocol and fetches the file
// QEMU boots: the kernel image, or for PVH of a bzImage the vmlinux
// kernel-registry extracted.
func (s *Service) chooseKernel(ctx context.Context, kimg *schemas.Image, facts *schemas.Kernel, mode vmtemplate.BootMode, plan *bootPlan) error {
	name := kimg.Name
	if facts != nil && facts.Name != "" {
		name = facts.Name
	}
	pvhReady := facts != nil && facts.Pvh && (facts.Format == "elf" || facts.Vmlinux != "")
	switch mode {
	case vmtemplate.BootPVH:
		if facts == nil {
			return fmt.Errorf("OS/BOOT_MODE pvh: kernel %d (%s) has not been examined by kernel-registry, so its PVH entry note is unknown", kimg.ID, name)
		}
		if !facts.Pvh {
			return fmt.Errorf("kernel %d (%s) has no PVH entry note: boot it with OS/BOOT_MODE = linux (or auto)", kimg.ID, name)
		}
		if !pvhReady {
			return fmt.Errorf("kernel %d (%s) has a PVH entry note but kernel-registry kept no uncompressed vmlinux of it", kimg.ID, name)
		}
	case vmtemplate.BootLinux:
		pvhReady = false
	}
	file := &schemas.VMFile{ImageID: kimg.ID, Name: name, BootMode: schemas.VMBootModeLinux}
	if facts != nil {
		file.Version = facts.Version
	}
	var err error
	switch {
	case pvhReady && facts.Format != "elf":
		file.BootMode = schemas.VMBootModePvh
		plan.QEMU.Kernel, err = s.cache.url(ctx, vmlinuxKey(kimg), facts.Vmlinux, "")
	default:
		if pvhReady {
			file.BootMode = schemas.VMBootModePvh
		}
		plan.QEMU.Kernel, err = s.cache.image(ctx, kimg)
	}
	if err != nil {
		return fmt.Errorf("OS/KERNEL_DS: kernel %d: %w", kimg.ID, err)
	}
	plan.Kernel = file
	return nil
}
