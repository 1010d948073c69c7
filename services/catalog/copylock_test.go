package catalog

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/schemas"
)

func (h *harness) copyLock(id, vm int64, locked bool) (schemas.ImageCopyLocked, error) {
	h.t.Helper()
	return answer[schemas.ImageCopyLocked](h, schemas.CommandCatalogImageCopyLock, schemas.ImageCopyLock{ID: id, VMID: vm, Locked: locked}, schemas.EventCatalogImageCopyLocked)
}

// TestCopyLockShowsLockedUsed: while a VM's disk is copied (save-as), its
// image is LOCKED_USED (LOCKED_USED_PERS): no new VM takes it, no second
// copy starts, the VMs cannot let go, and unlocking gives it back.
func TestCopyLockShowsLockedUsed(t *testing.T) {
	h := newHarness(t)
	shared := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, []byte("shared"))
	pers := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, []byte("pers"))
	h.mustUse(shared.ID, 7)
	h.mustUse(shared.ID, 8)
	h.mustUse(pers.ID, 7)

	if ev, err := h.copyLock(shared.ID, 7, true); err != nil || State(ev.State) != StateLockedUsed {
		t.Fatalf("lock: %+v %v", ev, err)
	}
	if _, err := h.use(shared.ID, 9); !strings.Contains(refusalOf(t, err), "is LOCKED_USED (an operation holds it)") {
		t.Errorf("a new VM took a LOCKED_USED image: %v", err)
	}
	if _, err := h.copyLock(shared.ID, 8, true); !strings.Contains(refusalOf(t, err), "another copy of a disk made from it") {
		t.Errorf("a second copy: %v", err)
	}
	if _, err := h.release(shared.ID, 8, nil); !strings.Contains(refusalOf(t, err), "LOCKED_USED (an operation on it is still running") {
		t.Errorf("release while locked: %v", err)
	}
	if _, err := h.copyLock(shared.ID, 9, true); !strings.Contains(refusalOf(t, err), "is not held by VM 9") {
		t.Errorf("a VM that does not hold it: %v", err)
	}
	if ev, err := h.copyLock(shared.ID, 7, false); err != nil || State(ev.State) != StateUsed {
		t.Fatalf("unlock: %+v %v", ev, err)
	}
	if ev, err := h.copyLock(pers.ID, 7, true); err != nil || State(ev.State) != StateLockedUsedPers {
		t.Fatalf("lock of a persistent image: %+v %v", ev, err)
	}
	if ev, err := h.copyLock(pers.ID, 7, false); err != nil || State(ev.State) != StateUsedPers {
		t.Fatalf("unlock of a persistent image: %+v %v", ev, err)
	}
	h.wantStates(shared.ID, "->LOCKED", "LOCKED->READY", "READY->USED", "USED->LOCKED_USED", "LOCKED_USED->USED")
	h.wantStates(pers.ID, "->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->LOCKED_USED_PERS", "LOCKED_USED_PERS->USED_PERS")
}
