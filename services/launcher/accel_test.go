package launcher_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/qemu"
	"github.com/slipway/slipway/services/launcher/qemu/qemutest"
)

// The launcher boots with what its probe chose and the VM record says which
// accelerator and CPU model, and why the better candidates were passed over.
func TestVMRecordsTheProbedAccelerator(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	h := newHarness(t, func(c *launcher.Config) { c.QEMU = qemutest.Wrapper(t, "kvm", qemutest.AbortMSR) })
	token := "tok-" + testenv.Unique()
	kernel, _ := bootImages(t, h, readyScript(token, false))
	tid := h.createTemplate("accel", fmt.Sprintf(`NAME = "accel"
MEMORY = 256
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE=\"initrd\"]" ]
`, kernel.ID))
	id := h.instantiate(tid, "")
	vm := h.waitVM(id, schemas.VMStatePoweroff, bootTimeout)
	a := vm.Accelerator
	if a == nil || a.Accel != schemas.VMAccelTcg || a.Cpu != qemu.CPUBase || len(a.PassedOver) != 2 {
		t.Fatalf("accelerator %+v, want tcg qemu64 after two KVM candidates", a)
	}
	for i, cpu := range []string{qemu.CPUHost, qemu.CPUBase} {
		p := a.PassedOver[i]
		if p.Accel != schemas.VMAccelKvm || p.Cpu != cpu || p.Reason != "qemu aborted: failed to set MSR 0x10a to 0x69" {
			t.Errorf("passed over[%d] = %+v", i, p)
		}
	}
	if !strings.Contains(h.console(id), "token="+token) {
		t.Errorf("the VM did not run under TCG:\n%s", h.console(id))
	}
}

// A forced KVM that fails its probe stops the launcher at start with the
// reason; it does not fall back to TCG.
func TestForcedKVMThatFailsIsAnErrorAtStart(t *testing.T) {
	needTools(t, "qemu-system-x86_64")
	h := newHarness(t)
	svc := launcher.New(h.connect(launcher.Name), h.blobs, launcher.Config{
		WorkDir: t.TempDir(), QEMU: qemutest.Wrapper(t, "kvm", qemutest.AbortMSR), Accel: qemu.AccelKVM, Logger: testenv.Logger(t, slog.LevelInfo)})
	ctx, cancel := context.WithTimeout(h.ctx, time.Minute)
	defer cancel()
	err := svc.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), launcher.EnvAccel+"=kvm") ||
		!strings.Contains(err.Error(), "kvm -cpu host: qemu aborted: failed to set MSR 0x10a") {
		t.Fatalf("Run with a failing forced KVM = %v", err)
	}
	select {
	case <-svc.Ready():
		t.Error("the launcher became ready without an accelerator")
	default:
	}
}
