package launcher

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/firecracker"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

// firecrackerArgs join the launcher's command line under Firecracker: its
// only way to end is the guest rebooting through the keyboard controller
// (panic=-1 then exits too), and it has no PCI bus.
const firecrackerArgs = "reboot=k pci=off"

// firecrackerFetchTimeout bounds the blob fetches of one firecracker
// query. They are detached from the query's own deadline (10 s), so a large
// blob still lands in the cache and the next ask finds it.
const firecrackerFetchTimeout = 10 * time.Minute

// fcPlan gathers the configuration's parts and what is wrong with them.
type fcPlan struct {
	kernel   firecracker.Kernel
	drives   []firecracker.Drive
	problems []string
	notes    []string
}

func (p *fcPlan) problem(format string, a ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, a...))
}

// queryFirecracker resolves a template's kernel, initrd and disks as the
// PROLOG does and fetches them to the cache, without a VM and without
// locking any image, then builds and validates the Firecracker
// configuration. A template that cannot be resolved at all (an image
// that does not exist) is an error; what Firecracker cannot take is a
// problem in the answer.
func (s *Service) queryFirecracker(ctx context.Context, r schemas.LauncherFirecrackerRequest) (schemas.LauncherFirecrackerReply, error) {
	var none schemas.LauncherFirecrackerReply
	u, service, err := s.asker(ctx)
	if err != nil {
		return none, err
	}
	t, err := s.findTemplate(ctx, r.TemplateID, r.Name)
	if err != nil {
		return none, err
	}
	// What instantiate needs: use of the template.
	if err := mayShow(u, service, templateObject(t)); err != nil {
		return none, err
	}
	spec, err := s.parseTemplate(t.Template, t.AdminAttributes)
	if err != nil {
		return none, fmt.Errorf("template %d: %w", t.ID, err)
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), firecrackerFetchTimeout)
	defer cancel()
	p := &fcPlan{}
	if err := s.firecrackerKernel(ctx, spec, p); err != nil {
		return none, fmt.Errorf("template %d: %w", t.ID, err)
	}
	if err := s.firecrackerDisks(ctx, spec, p); err != nil {
		return none, fmt.Errorf("template %d: %w", t.ID, err)
	}
	return p.answer(spec), nil
}

// answer builds, validates and judges the configuration: Config is the
// JSON `firecracker --config-file` reads, its paths in the launcher's
// cache; Valid is true when Problems is empty; Bootable says whether this
// host can boot it (a firecracker binary on PATH and /dev/kvm), WhyNot why
// not. Notes are remarks that do not make the configuration invalid.
func (p *fcPlan) answer(spec *vmtemplate.Spec) schemas.LauncherFirecrackerReply {
	c := firecracker.Build(p.kernel, p.drives, spec.VCPU, spec.MemoryMiB, kernelCmdline(spec.OS, firecrackerArgs))
	check := firecracker.Problems
	if p.kernel.Path == "" { // already a problem; the kernel check would only add "open : no such file"
		check = firecracker.ConfigProblems
	}
	for _, e := range check(c) {
		p.problems = append(p.problems, e.Error())
	}
	a := schemas.LauncherFirecrackerReply{Config: schemas.FirecrackerConfig(*c), Valid: len(p.problems) == 0, Problems: p.problems, Notes: p.notes}
	if a.Problems == nil {
		a.Problems = []string{}
	}
	_, err := firecracker.Available("")
	switch {
	case err != nil:
		a.WhyNot = err.Error()
	case !a.Valid:
		a.WhyNot = "the configuration has problems"
	default:
		a.Bootable = true
	}
	return a
}

// firecrackerKernel resolves OS/KERNEL_DS to an uncompressed ELF (the
// image itself, or the vmlinux kernel-registry kept of a bzImage) and the
// initrd, and fetches them.
func (s *Service) firecrackerKernel(ctx context.Context, spec *vmtemplate.Spec, p *fcPlan) error {
	o := spec.OS
	if o.KernelDS.IsZero() {
		if !o.InitrdDS.IsZero() {
			return errors.New("OS/INITRD_DS needs OS/KERNEL_DS: an initrd without a kernel cannot boot")
		}
		p.problem("OS/KERNEL_DS is not set: Firecracker has no firmware and boots a kernel directly")
		return nil
	}
	kimg, facts, err := s.osKernel(ctx, o)
	if err != nil {
		return err
	}
	name := kimg.Name
	if facts != nil && facts.Name != "" {
		name = facts.Name
	}
	switch {
	case facts == nil:
		p.notes = append(p.notes, fmt.Sprintf("kernel %d (%s) has not been examined by kernel-registry: its file is used as it is", kimg.ID, name))
		p.kernel.Path, err = s.cache.image(ctx, kimg)
	case facts.Arch != "" && facts.Arch != "x86_64":
		p.problem("kernel %d (%s) is for %s: Firecracker boots x86_64 kernels here", kimg.ID, name, facts.Arch)
	case facts.Format == "elf":
		p.kernel.Path, err = s.cache.image(ctx, kimg)
	case facts.Vmlinux != "":
		p.kernel.Path, err = s.cache.url(ctx, vmlinuxKey(kimg), facts.Vmlinux, "")
	default:
		p.problem("kernel %d (%s) is a %s and kernel-registry kept no uncompressed vmlinux of it: Firecracker boots an uncompressed ELF", kimg.ID, name, facts.Format)
	}
	if err != nil {
		return fmt.Errorf("OS/KERNEL_DS: kernel %d: %w", kimg.ID, err)
	}
	iimg, attr, err := s.initrdFor(ctx, o, kimg, facts)
	if err != nil || iimg == nil {
		return err
	}
	if p.kernel.InitrdPath, err = s.cache.image(ctx, iimg); err != nil {
		return fmt.Errorf("%s: %w", attr, err)
	}
	return nil
}

// firecrackerDisks resolves the DISKs as the PROLOG does and fetches the
// raw ones; a qcow2 or LUKS disk is a problem naming it. Firecracker gets
// the cached blob, which every VM shares: a disk the guest would write is
// given read-only, with a note, so running the configuration cannot change
// the cache.
func (s *Service) firecrackerDisks(ctx context.Context, spec *vmtemplate.Spec, p *fcPlan) error {
	disks, err := s.resolveDisks(ctx, spec)
	if err != nil {
		return err
	}
	targets, err := diskTargets(spec, disks)
	if err != nil {
		return err
	}
	root := spec.OS.Root
	if root == "" {
		root = vmtemplate.DefaultRoot
	}
	for i, d := range disks {
		img := d.img
		switch img.Format {
		case "qcow2":
			p.problem("DISK %d: image %d (%s) is qcow2: Firecracker reads raw disks only (convert it to raw)", i, img.ID, img.Name)
			continue
		case "luks":
			p.problem("DISK %d: image %d (%s) is LUKS-encrypted: Firecracker cannot open LUKS disks", i, img.ID, img.Name)
			continue
		}
		path, err := s.cache.image(ctx, img)
		if err != nil {
			return fmt.Errorf("DISK %d: %w", i, err)
		}
		if img.Type != "CDROM" && !d.spec.ReadOnly {
			p.notes = append(p.notes, fmt.Sprintf("DISK %d: drive disk%d is the launcher's shared cached copy of image %d, so it is read-only here; copy it and clear is_read_only for a guest that writes it", i, i, img.ID))
		}
		p.drives = append(p.drives, firecracker.Drive{ID: fmt.Sprintf("disk%d", i), Path: path,
			Format: "raw", Root: targets[i] == root, ReadOnly: true})
	}
	return nil
}
