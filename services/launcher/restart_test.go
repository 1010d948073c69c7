package launcher_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// rewriteVM changes a VM's record behind the launcher's back, the way a
// launcher that died mid-way would have left it.
func (h *harness) rewriteVM(id int64, change func(rec map[string]any)) {
	h.t.Helper()
	kv, err := testenv.JetStream(h.t, h.url).KeyValue(h.ctx, "slipway_launcher_vms") // the witness: no principal writes another's bucket
	if err != nil {
		h.t.Fatal(err)
	}
	e, err := kv.Get(h.ctx, fmt.Sprint(id))
	if err != nil {
		h.t.Fatal(err)
	}
	var rec map[string]any
	mustJSON(h.t, e.Value(), &rec)
	change(rec)
	b, _ := json.Marshal(rec)
	if _, err := kv.Update(h.ctx, fmt.Sprint(id), b, e.Revision()); err != nil {
		h.t.Fatal(err)
	}
}

// TestRestartSettlesVMs starts a launcher on records a dead launcher left:
// a VM RUNNING (its QEMU gone) becomes POWEROFF with its lock kept; a VM
// in PROLOG holding a lock becomes FAILED and the lock is released.
func TestRestartSettlesVMs(t *testing.T) {
	h := newHarness(t)
	img := h.importFile(rawDisk(t, 1<<20, "img"), schemas.ImageCreate{Name: "img", Type: "OS"})
	tid := h.createTemplate("t", "DISK = [ IMAGE_ID = 999 ]\n")
	running := h.instantiate(tid, "was-running")
	prolog := h.instantiate(tid, "was-in-prolog")
	h.waitFinal(running)
	h.waitFinal(prolog)
	h.stopLauncher()

	// The catalog holds img for both VMs, as their PROLOGs would have
	// left it.
	asLauncher := h.connect(schemas.ServiceLauncher) // image-use is the launcher's to send
	for _, vm := range []int64{running, prolog} {
		if _, err := asLauncher.Call(h.ctx, "catalog", "image-use", schemas.ImageUse{ID: img.ID, VMID: vm}, []string{"image-used"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(h.work, "vms", fmt.Sprint(running)), 0o700); err != nil {
		t.Fatal(err)
	}
	h.rewriteVM(running, func(r map[string]any) {
		r["state"], r["error"] = "RUNNING", ""
		r["run"] = map[string]any{"seq": 5, "locks": []int64{img.ID}, "pid": 999999,
			"plan": map[string]any{"qemu": map[string]any{}, "disks": []any{}}}
	})
	h.rewriteVM(prolog, func(r map[string]any) {
		r["state"], r["error"] = "PROLOG", ""
		r["run"] = map[string]any{"seq": 1, "locks": []int64{img.ID}}
	})

	h.startLauncher()
	vm := h.waitVM(running, schemas.VMStatePoweroff, 30*time.Second)
	if !strings.Contains(vm.Reason, "launcher stopped") {
		t.Errorf("reason %q", vm.Reason)
	}
	vp := h.waitFinal(prolog)
	if vp.State != schemas.VMStateFailed || !strings.Contains(vp.Error, "PROLOG") {
		t.Errorf("VM left in PROLOG: %s %q", vp.State, vp.Error)
	}
	got := h.waitImage(img.ID, func(i schemas.Image) bool { return i.RVMs == 1 }, "held by one VM")
	if len(got.VMs) != 1 || got.VMs[0] != running {
		t.Errorf("image held by %v, want only VM %d (POWEROFF keeps its disks)", got.VMs, running)
	}
	// The POWEROFF VM still ends cleanly.
	h.mustCall("terminate", schemas.VMAction{ID: running}, "vm-state-changed")
	h.waitVM(running, schemas.VMStateDone, 30*time.Second)
	if got := h.image(img.ID); got.State != "READY" || got.RVMs != 0 {
		t.Errorf("image after terminate: %s rvms %d", got.State, got.RVMs)
	}
}
