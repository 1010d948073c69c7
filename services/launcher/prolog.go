package launcher

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/contextdisk"
	"github.com/slipway/slipway/services/launcher/qemu"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

// ReadyLine starts the console line the guest init prints when the
// container's process runs (services/builder/guestinit.ReadyLine).
const ReadyLine = "SLIPWAY-READY"

// baseCmdline starts every kernel command line; ROOT and KERNEL_CMD
// complete it.
const baseCmdline = "console=ttyS0 root=/dev/%s rw panic=-1"

// contextDiskID is the QEMU ID of the context ISO.
const contextDiskID = "context"

// diskImage is one DISK with its catalog image.
type diskImage struct {
	spec vmtemplate.Disk
	img  *schemas.Image
}

// prolog prepares a VM: every image resolved, checked and locked, blobs
// fetched, overlays and private copies made, LUKS passphrases written,
// kernel and initrd chosen, the context ISO built. On error the locks
// taken stay recorded in the VM for the caller's clean-up.
func (s *Service) prolog(ctx context.Context, rec *vmRecord) (*bootPlan, error) {
	// Instantiate checked the template as its writer could use it.
	spec, err := s.parseTemplate(rec.Template, true)
	if err != nil {
		return nil, err
	}
	dir := s.vmDir(rec.ID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	disks, err := s.resolveDisks(ctx, spec)
	if err != nil {
		return nil, err
	}
	for i, d := range disks {
		if err := s.lock(ctx, rec.ID, d.img.ID); err != nil {
			return nil, fmt.Errorf("DISK %d: %w", i, err)
		}
	}
	raw, err := qemu.ParseRaw(spec.Raw) // parseTemplate checked it; the words it allows
	if err != nil {
		return nil, err
	}
	plan := &bootPlan{QEMU: qemu.Config{Name: fmt.Sprintf("one-%d", rec.ID), CPUs: spec.VCPU,
		MemoryMiB: spec.MemoryMiB, ExtraArgs: raw}}
	if err := s.prepareDisks(ctx, spec, disks, dir, plan); err != nil {
		return nil, err
	}
	if err := s.prepareBoot(ctx, spec, plan); err != nil {
		return nil, err
	}
	if err := s.prepareContext(ctx, spec, dir, plan); err != nil {
		return nil, err
	}
	for _, n := range spec.NICs {
		plan.QEMU.NICs = append(plan.QEMU.NICs, qemu.NIC{Model: nicModel(n.Model), MAC: n.MAC})
	}
	return plan, nil
}

// nicModel maps OpenNebula's MODEL names to QEMU devices.
func nicModel(m string) string {
	switch m {
	case "", "virtio":
		return "virtio-net-pci"
	}
	return m
}

// resolveDisks finds and checks every DISK's image before anything is
// locked, so a bad template fails without touching the catalog.
func (s *Service) resolveDisks(ctx context.Context, spec *vmtemplate.Spec) ([]diskImage, error) {
	out := make([]diskImage, 0, len(spec.Disks))
	for i, d := range spec.Disks {
		img, err := s.showImage(ctx, d.ImageID, d.Image, d.ImageUname)
		if err != nil {
			return nil, fmt.Errorf("DISK %d: %w", i, err)
		}
		switch img.Type {
		case "OS", "CDROM", "DATABLOCK":
		default:
			return nil, fmt.Errorf("DISK %d: image %d (%s) is a %s image: a DISK takes OS, CDROM or DATABLOCK images (kernels and initrds go in OS, context files in CONTEXT/FILES_DS)", i, img.ID, img.Name, img.Type)
		}
		if err := usable(img); err != nil {
			return nil, fmt.Errorf("DISK %d: %w", i, err)
		}
		if _, err := qemuFormat(img.Format); err != nil {
			return nil, fmt.Errorf("DISK %d: image %d (%s): %w", i, img.ID, img.Name, err)
		}
		out = append(out, diskImage{spec: d, img: img})
	}
	return out, nil
}

// diskTargets are the targets (vda, sdb…) of disks, the template's DISKs
// resolved: spec.Targets with the images' DEV_PREFIX.
func diskTargets(spec *vmtemplate.Spec, disks []diskImage) ([]string, error) {
	prefixes := make([]string, len(disks))
	for i, d := range disks {
		prefixes[i] = d.img.DevPrefix
	}
	targets, err := spec.Targets(prefixes)
	if err != nil {
		return nil, fmt.Errorf("DISK: %w", err)
	}
	return targets, nil
}

// qemuFormat is the QEMU format driver of an image format.
func qemuFormat(f schemas.DiskFormat) (string, error) {
	switch f {
	case "raw", "iso":
		return qemu.FormatRaw, nil
	case "qcow2":
		return qemu.FormatQcow2, nil
	case "luks":
		return qemu.FormatLUKS, nil
	case "":
		return "", fmt.Errorf("its format is not known yet")
	}
	return "", fmt.Errorf("its format %s cannot be booted: convert it to raw or qcow2", f)
}

// prepareDisks materialises every DISK in the VM directory.
func (s *Service) prepareDisks(ctx context.Context, spec *vmtemplate.Spec, disks []diskImage, dir string, plan *bootPlan) error {
	targets, err := diskTargets(spec, disks)
	if err != nil {
		return err
	}
	for i, d := range disks {
		pd, qd, err := s.prepareDisk(ctx, int64(i), d, targets[i], dir)
		if err != nil {
			return fmt.Errorf("DISK %d: %w", i, err)
		}
		plan.Disks = append(plan.Disks, pd)
		plan.QEMU.Disks = append(plan.QEMU.Disks, qd)
	}
	return nil
}

// prepareDisk fetches one image and makes what QEMU opens: the cached blob
// itself (read-only disks, CDROMs), a private copy (persistent images) or
// a qcow2 overlay (the others).
func (s *Service) prepareDisk(ctx context.Context, i int64, d diskImage, target, dir string) (planDisk, qemu.Disk, error) {
	img := d.img
	format, _ := qemuFormat(img.Format)
	bus, err := qemu.BusForPrefix(target)
	if err != nil {
		return planDisk{}, qemu.Disk{}, err
	}
	base, err := s.cache.image(ctx, img)
	if err != nil {
		return planDisk{}, qemu.Disk{}, err
	}
	n := strconv.FormatInt(i, 10)
	pd := planDisk{DiskID: i, ImageID: img.ID, QEMUID: "disk" + n, Format: format, Base: base, Path: base,
		Public: schemas.VMDisk{DiskID: i, ImageID: img.ID, Image: img.Name, Type: img.Type, Format: img.Format,
			Target: target, Bus: bus, Size: img.Size,
			// The image's snapshots are in its blob, so in the disk.
			SnapshotTree: img.Snapshots, Snapshots: snapshots.Tree(img.Snapshots).Names(),
			NextSnapshot: snapshots.Tree(img.Snapshots).Next(img.NextSnapshot)}}
	qd := qemu.Disk{ID: pd.QEMUID, Format: format, Bus: bus, Serial: target}
	if format == qemu.FormatLUKS {
		pd.Secret = filepath.Join(dir, "disk-"+n+".secret")
		if err := s.writePassphrase(ctx, img, pd.Secret); err != nil {
			return pd, qd, err
		}
	}
	cdrom := img.Type == "CDROM"
	switch {
	case cdrom || d.spec.ReadOnly:
		qd.ReadOnly = true
		if cdrom {
			qd.Media = qemu.MediaCDROM
		}
		qd.SecretFile = pd.Secret
	case img.Persistent:
		pd.Persistent = true
		pd.Path = filepath.Join(dir, "disk-"+n+"."+string(img.Format))
		if err := s.copyFile(ctx, base, pd.Path); err != nil {
			return pd, qd, err
		}
		qd.SecretFile = pd.Secret
	default:
		pd.Overlay = true
		pd.Path = filepath.Join(dir, "disk-"+n+".qcow2")
		size := int64(0) // qemu-img reads it from the backing image…
		if format == qemu.FormatLUKS {
			size = img.Size // …which it cannot open without the passphrase
		}
		if err := qemu.CreateOverlay(ctx, s.img, pd.Path, base, format, size); err != nil {
			return pd, qd, err
		}
		qd.Format = qemu.FormatQcow2
		if pd.Secret != "" {
			qd.BackingSecretFile, qd.BackingFile = pd.Secret, base
		}
	}
	qd.Path = pd.Path
	pd.Public.Persistent, pd.Public.Readonly, pd.Public.LUKS = pd.Persistent, qd.ReadOnly, pd.Secret != ""
	return pd, qd, nil
}

// copyFile makes a private, writable copy of a cached blob, sparse and
// sharing blocks with it where the filesystem can.
func (s *Service) copyFile(ctx context.Context, src, dst string) error {
	cmd := exec.CommandContext(ctx, "cp", "--sparse=always", "--reflink=auto", src, dst)
	cmd.Env = []string{}
	out, err := cmd.CombinedOutput()
	if err != nil {
		os.Remove(dst)
		return fmt.Errorf("copy %s: %v: %s", filepath.Base(src), err, strings.TrimSpace(string(out)))
	}
	return os.Chmod(dst, 0o600)
}

// qemuImg runs a whole-image qemu-img call (convert, snapshot) through the
// shared confined runner, with its Heavy limits; qemu-img's message is in
// the error. The caller checks the paths with qemuimg.CheckPath.
func (s *Service) qemuImg(ctx context.Context, args ...string) error {
	_, err := s.img.Run(ctx, s.img.Heavy(), args...)
	return err
}

// prepareContext builds the CONTEXT ISO and attaches it read-only as the
// next free virtio disk.
func (s *Service) prepareContext(ctx context.Context, spec *vmtemplate.Spec, dir string, plan *bootPlan) error {
	c := spec.Context
	if len(c.Vars) == 0 && len(c.FilesDS) == 0 {
		return nil
	}
	vars := make([]contextdisk.Var, len(c.Vars))
	for i, v := range c.Vars {
		vars[i] = contextdisk.Var{Name: v.Name, Value: v.Value}
	}
	var files []contextdisk.File
	for i, ref := range c.FilesDS {
		img, err := s.showFile(ctx, ref, fmt.Sprintf("CONTEXT/FILES_DS %d", i), "CONTEXT")
		if err != nil {
			return err
		}
		path, err := s.cache.image(ctx, img)
		if err != nil {
			return fmt.Errorf("CONTEXT/FILES_DS %d: %w", i, err)
		}
		files = append(files, contextdisk.File{Name: contextFileName(img.Name), Path: path})
	}
	iso := filepath.Join(dir, "context.iso")
	if err := contextdisk.Build(iso, vars, files); err != nil {
		return fmt.Errorf("CONTEXT: %w", err)
	}
	var used []string
	for _, d := range plan.Disks {
		used = append(used, d.Public.Target)
	}
	target := nextTarget("vd", used)
	plan.QEMU.Disks = append(plan.QEMU.Disks, qemu.Disk{ID: contextDiskID, Path: iso, Format: qemu.FormatRaw,
		Bus: qemu.BusVirtio, ReadOnly: true, Serial: target})
	return nil
}

// contextFileName is a file image's name as a file on the context disk.
func contextFileName(name string) string {
	n := strings.Trim(unsafeName.ReplaceAllString(name, "_"), ".")
	if n == "" {
		n = "file"
	}
	return n
}

// nextTarget is the first name prefix+letter not in used.
func nextTarget(prefix string, used []string) string {
	for c := 'a'; c <= 'z'; c++ {
		t := prefix + string(c)
		if !slices.Contains(used, t) {
			return t
		}
	}
	return prefix + "zz"
}

// describe fills the public VM record from the plan.
func (p *bootPlan) describe(r *vmRecord) {
	r.Cmdline = p.QEMU.Append
	r.Kernel, r.Initrd = p.Kernel, p.Initrd
	r.Disks = make([]schemas.VMDisk, len(p.Disks))
	for i, pd := range p.Disks {
		r.Disks[i] = pd.Public
	}
}
