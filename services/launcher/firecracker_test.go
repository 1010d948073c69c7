package launcher_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/firecracker"
)

// waitKernelFacts waits until kernel-registry has examined a KERNEL image.
func (h *harness) waitKernelFacts(id int64) kernelFacts {
	h.t.Helper()
	var facts kernelFacts
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := h.cli.Query(h.ctx, "kernel-registry", "show", map[string]int64{"id": id}, &facts)
		if err == nil {
			return facts
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("kernel-registry never examined kernel %d: %v", id, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// firecrackerConfig asks the launcher's firecracker query.
func (h *harness) firecrackerConfig(req schemas.LauncherFirecrackerRequest) (schemas.LauncherFirecrackerReply, error) {
	ctx, cancel := context.WithTimeout(h.ctx, 2*time.Minute)
	defer cancel()
	var ans schemas.LauncherFirecrackerReply
	err := h.cli.Query(ctx, launcher.Name, schemas.QueryLauncherFirecracker, req, &ans)
	return ans, err
}

// TestFirecrackerConfig asks the Firecracker configuration of templates
// whose kernel is Debian's bzImage as kernel-registry examined it: the
// configuration names the vmlinux kernel-registry kept (an ELF, fetched to
// the launcher's cache) and the cached raw disk; a qcow2 disk makes it
// invalid, naming the disk. Booting needs firecracker and KVM: the answer
// says whether this host has them.
func TestFirecrackerConfig(t *testing.T) {
	h := newHarness(t)
	h.startKernelRegistry()
	kernel, initrd := bootImages(t, h, readyScript("fc", false))
	facts := h.waitKernelFacts(kernel.ID)
	if facts.Format != "bzimage" || facts.Vmlinux == "" {
		t.Fatalf("kernel facts: %+v, want a bzImage with its vmlinux kept", facts)
	}
	disk := h.importFile(rawDisk(t, 1<<20, "fc-raw-disk"), schemas.ImageCreate{Name: "fc-raw", Type: "OS"})
	tid := h.createTemplate("fc", fmt.Sprintf(`VCPU = 2
MEMORY = 384
DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]", KERNEL_CMD = "quiet" ]
`, disk.ID, kernel.ID, initrd.ID))

	ans, err := h.firecrackerConfig(schemas.LauncherFirecrackerRequest{TemplateID: &tid})
	if err != nil {
		t.Fatal(err)
	}
	if !ans.Valid || len(ans.Problems) != 0 {
		t.Fatalf("firecracker config of a raw disk and an examined kernel: %+v", ans)
	}
	c := (*firecracker.VMConfig)(&ans.Config)
	if err := firecracker.CheckKernel(c.BootSource.KernelImagePath); err != nil {
		t.Errorf("the kernel is not an ELF vmlinux: %v", err)
	}
	if c.BootSource.InitrdPath == "" || !fileHasPrefix(t, c.BootSource.InitrdPath, "\x1f\x8b") {
		t.Errorf("initrd %q is not the gzip initramfs", c.BootSource.InitrdPath)
	}
	if len(c.Drives) != 1 || !c.Drives[0].IsRootDevice || !fileHasPrefix(t, c.Drives[0].PathOnHost, "fc-raw-disk") ||
		!strings.HasPrefix(c.Drives[0].PathOnHost, filepath.Join(h.work, "cache")+"/") {
		t.Errorf("drives: %+v, want the cached raw disk as root", c.Drives)
	}
	if c.MachineConfig.VcpuCount != 2 || c.MachineConfig.MemSizeMiB != 384 {
		t.Errorf("machine-config: %+v", c.MachineConfig)
	}
	if a := c.BootSource.BootArgs; !strings.HasPrefix(a, "console=ttyS0 root=/dev/vda") || !strings.Contains(a, "reboot=k") ||
		!strings.HasSuffix(a, " quiet") {
		t.Errorf("boot_args %q", a)
	}
	if err := firecracker.Validate(c); err != nil {
		t.Errorf("the answered configuration does not validate here: %v", err)
	}
	if _, err := firecracker.Available(""); err != nil {
		if ans.Bootable || ans.WhyNot != err.Error() {
			t.Errorf("bootable %v, why_not %q; want false, %q", ans.Bootable, ans.WhyNot, err)
		}
		t.Logf("not bootable here: %s", ans.WhyNot)
	} else if !ans.Bootable {
		t.Errorf("firecracker and KVM are here, yet not bootable: %s", ans.WhyNot)
	}

	// A qcow2 disk: invalid, naming the disk; by template name.
	q := h.importFile(rawDisk(t, 1<<20, "fc-qcow2-disk"), schemas.ImageCreate{Name: "fc-qcow2", Type: "DATABLOCK", Format: "qcow2"})
	if q.Format != "qcow2" {
		t.Fatalf("qcow2 image: %+v", q)
	}
	h.createTemplate("fc-qcow2", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]" ]
`, disk.ID, q.ID, kernel.ID, initrd.ID))
	ans, err = h.firecrackerConfig(schemas.LauncherFirecrackerRequest{Name: "fc-qcow2"})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("DISK 1: image %d (fc-qcow2) is qcow2", q.ID)
	if ans.Valid || ans.Bootable || len(ans.Problems) != 1 || !strings.Contains(ans.Problems[0], want) {
		t.Errorf("qcow2 disk: valid %v bootable %v problems %q, want %q", ans.Valid, ans.Bootable, ans.Problems, want)
	}

	if _, err := h.firecrackerConfig(schemas.LauncherFirecrackerRequest{Name: "nope"}); bus.ErrorCode(err) != bus.CodeNotFound ||
		!strings.Contains(err.Error(), `no template is named "nope"`) {
		t.Errorf("missing template: %v", err)
	}
}

// fileHasPrefix reports whether the file at path starts with prefix.
func fileHasPrefix(t *testing.T, path, prefix string) bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Errorf("open %s: %v", path, err)
		return false
	}
	defer f.Close()
	b := make([]byte, len(prefix))
	if _, err := f.Read(b); err != nil {
		return false
	}
	return string(b) == prefix
}
