package launcher_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
)

// kernelFacts is what the test reads of kernel-registry's record.
type kernelFacts struct {
	ID      int64  `json:"id"`
	Format  string `json:"format"`
	Version string `json:"version"`
	PVH     bool   `json:"pvh"`
	Vmlinux string `json:"vmlinux"`
}

// TestPVHBootWithKernelRegistry boots Debian's kernel as kernel-registry
// examined it: with BOOT_MODE = pvh the launcher boots the uncompressed
// vmlinux kernel-registry kept, through its PVH entry. A kernel without
// the note would be refused naming it.
func TestPVHBootWithKernelRegistry(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	h := newHarness(t)
	h.startKernelRegistry()
	token := "pvh-" + testenv.Unique()
	kernel, initrd := bootImages(t, h, readyScript(token, false))
	var facts kernelFacts
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := h.cli.Query(h.ctx, "kernel-registry", "show", map[string]int64{"id": kernel.ID}, &facts)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("kernel-registry never examined kernel %d: %v", kernel.ID, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if facts.Format != "bzimage" || facts.Version == "" {
		t.Fatalf("kernel facts: %+v", facts)
	}
	disk := h.importFile(rawDisk(t, 1<<20, "d"), schemas.ImageCreate{Name: "d", Type: "OS"})
	tid := h.createTemplate("pvh", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]", BOOT_MODE = "pvh" ]
`, disk.ID, kernel.ID, initrd.ID))
	id := h.instantiate(tid, "")
	if !facts.PVH {
		vm := h.waitFinal(id)
		if vm.State != schemas.VMStateFailed || !strings.Contains(vm.Error, fmt.Sprintf("kernel %d", kernel.ID)) ||
			!strings.Contains(vm.Error, "no PVH entry note") {
			t.Fatalf("PVH boot of a kernel without the note: %s %q", vm.State, vm.Error)
		}
		testenv.Skip(t, "kernel %s has no PVH entry note: the refusal was checked, the PVH boot cannot be", facts.Version)
	}
	if facts.Vmlinux == "" {
		t.Fatalf("kernel-registry kept no vmlinux of the PVH bzImage: %+v", facts)
	}
	vm := h.waitVM(id, schemas.VMStatePoweroff, bootTimeout)
	if vm.Kernel == nil || vm.Kernel.BootMode != schemas.VMBootModePvh || vm.Kernel.Version != facts.Version {
		t.Errorf("kernel: %+v, want PVH boot of %s", vm.Kernel, facts.Version)
	}
	if c := h.console(id); !strings.Contains(c, "token="+token) || !strings.Contains(c, launcher.ReadyLine) {
		t.Fatalf("console:\n%s", c)
	}
	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id}, schemas.EventLauncherVMStateChanged)
	h.waitVM(id, schemas.VMStateDone, time.Minute)
	h.noQEMULeft()
}
