package launcher_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
)

// refused runs a command that must be refused with a message holding each
// of want.
func (h *harness) refused(verb string, data any, want ...string) {
	h.t.Helper()
	_, err := h.call(verb, data, "template-created", "template-updated", "template-deleted", "vm-created",
		"vm-state-changed", "disk-saved", "disk-snapshotted")
	var ce *bus.CallError
	if !errors.As(err, &ce) {
		h.t.Fatalf("%s %v: want a refusal, got %v", verb, data, err)
	}
	for _, w := range want {
		if !strings.Contains(ce.Message, w) {
			h.t.Errorf("%s: refusal %q does not say %q", verb, ce.Message, w)
		}
	}
}

// failedVM instantiates text and waits for the VM to fail; its reason
// must hold each of want.
func (h *harness) failedVM(name, text string, want ...string) schemas.VM {
	h.t.Helper()
	tid := h.createTemplate(name, text)
	id := h.instantiate(tid, "")
	vm := h.waitFinal(id)
	if vm.State != schemas.VMStateFailed {
		h.t.Fatalf("VM %d (%s) is %s, want FAILED", id, name, vm.State)
	}
	for _, w := range want {
		if !strings.Contains(vm.Error, w) || !strings.Contains(vm.Reason, w) {
			h.t.Errorf("VM %d (%s): error %q does not say %q", id, name, vm.Error, w)
		}
	}
	if _, err := os.Stat(filepath.Join(h.work, "vms", fmt.Sprint(id))); !os.IsNotExist(err) {
		h.t.Errorf("VM %d: its directory is left: %v", id, err)
	}
	return vm
}

func TestTemplatesAndRefusals(t *testing.T) {
	h := newHarness(t)
	ok := h.importFile(rawDisk(t, 1<<20, "ok"), schemas.ImageCreate{Name: "ok", Type: "OS"})
	off := h.importFile(rawDisk(t, 1<<20, "off"), schemas.ImageCreate{Name: "off", Type: "OS"})
	kern := h.importFile(rawDisk(t, 64<<10, "not-a-kernel"), schemas.ImageCreate{Name: "k", Type: "KERNEL", Datastore: "files"})
	if _, err := h.cli.Call(h.ctx, "catalog", "image-disable", schemas.ImageRef{ID: off.ID}, []string{"state-changed"}); err != nil {
		t.Fatal(err)
	}

	// Templates: a syntax error is refused with the parser's message;
	// names are unique; update and delete; queries by ID and name.
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "bad", Template: "DISK = [ IMAGE_ID = 1"}, `template "bad"`)
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "bad", Template: "DISK = [ IMAGE_ID = x ]\n"}, "IMAGE_ID")
	tid := h.createTemplate("t1", fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\n", ok.ID))
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "t1", Template: "MEMORY = 64\n"}, "already exists", fmt.Sprintf("ID %d", tid))
	m := h.mustCall(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: tid, Template: fmt.Sprintf("MEMORY = 128\nDISK = [ IMAGE_ID = %d ]\n", ok.ID)}, schemas.EventLauncherTemplateUpdated)
	var upd schemas.VMTemplate
	mustJSON(t, m.Data, &upd)
	if upd.Name != "t1" || !strings.Contains(upd.Template, "MEMORY = 128") {
		t.Errorf("updated template: %+v", upd)
	}
	var byName schemas.VMTemplate
	if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherTemplate, schemas.LauncherTemplateRequest{Name: "t1"}, &byName); err != nil || byName.ID != tid {
		t.Errorf("template by name: %+v %v", byName, err)
	}
	h.refused(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: 999, Template: "MEMORY = 1\n"}, "template 999 does not exist")
	h.refused(schemas.CommandLauncherInstantiate, schemas.LauncherInstantiate{TemplateID: 999}, "template 999 does not exist")
	gone := h.createTemplate("gone", "MEMORY = 64\n")
	h.mustCall(schemas.CommandLauncherTemplateDelete, schemas.LauncherTemplateDelete{ID: gone}, schemas.EventLauncherTemplateDeleted)
	var list []schemas.VMTemplate
	if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherTemplates, nil, &list); err != nil || len(list) != 1 || list[0].ID != tid {
		t.Errorf("templates after delete: %+v %v", list, err)
	}
	if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherTemplate, schemas.LauncherTemplateRequest{Name: "gone"}, &byName); !bus.IsNotFound(err) {
		t.Errorf("deleted template by name: %v", err)
	}

	// The template market-dockerhub sends with an imported app.
	h.failedVM("market-app", `NAME = "nginx"
DESCRIPTION = "Official build of Nginx."
CPU = "1"
MEMORY = "768"
DISK = [ IMAGE = "nginx", IMAGE_UNAME = "oneadmin" ]
OS = [ KERNEL_CMD = "console=ttyS0 init=/.slipway/init", KERNEL_DS = "$FILE[IMAGE=\"kernel\"]", ROOT = "vda" ]
GRAPHICS = [ LISTEN = "0.0.0.0", TYPE = "VNC" ]
CONTEXT = [ NETWORK = "YES", SSH_PUBLIC_KEY = "$USER[SSH_PUBLIC_KEY]" ]
`, `DISK 0: image "nginx" does not exist`)

	// VMs that cannot start fail with the reason, holding nothing.
	h.failedVM("missing", "DISK = [ IMAGE_ID = 999 ]\n", "DISK 0: image 999 does not exist")
	h.failedVM("missing-name", `DISK = [ IMAGE = "nope", IMAGE_UNAME = "oneadmin" ]`+"\n", `DISK 0: image "nope" does not exist`)
	h.failedVM("disabled", fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\n", off.ID), fmt.Sprintf("image %d (off) is DISABLED", off.ID))
	// The first disk is locked before the kernel is looked at: the lock
	// is released when the VM fails.
	h.failedVM("no-initrd", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=998]" ]
`, ok.ID, kern.ID), "OS/INITRD_DS: image 998 does not exist")
	h.failedVM("pvh", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", BOOT_MODE = "pvh" ]
`, ok.ID, kern.ID), fmt.Sprintf("kernel %d (k)", kern.ID), "PVH")
	h.failedVM("os-as-kernel", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]" ]
`, ok.ID, ok.ID), "OS/KERNEL_DS", "is a OS image, want KERNEL")
	vm := h.failedVM("kernel-as-disk", fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\n", kern.ID), "DISK 0", "KERNEL image")
	for _, img := range []schemas.Image{ok, off} {
		got := h.image(img.ID)
		if got.RVMs != 0 || (got.State != "READY" && got.State != "DISABLED") {
			t.Errorf("image %d after the failed VMs: %s rvms %d, want no VM on it", img.ID, got.State, got.RVMs)
		}
	}

	// What a FAILED VM accepts: terminate (→ DONE), nothing else.
	h.refused(schemas.CommandLauncherResume, schemas.LauncherResume{ID: vm.ID}, "FAILED", "POWEROFF")
	h.refused(schemas.CommandLauncherPoweroff, schemas.VMAction{ID: vm.ID}, "FAILED")
	h.refused(schemas.CommandLauncherDiskSaveAs, schemas.LauncherDiskSaveAs{ID: vm.ID, DiskID: 0, Name: "x"}, "FAILED")
	h.refused(schemas.CommandLauncherTerminate, schemas.VMAction{ID: 12345}, "VM 12345 does not exist")
	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: vm.ID}, schemas.EventLauncherVMStateChanged)
	h.waitVM(vm.ID, schemas.VMStateDone, 30e9)

	var vms []schemas.VM
	if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherVMs, schemas.LauncherVMsRequest{State: schemas.VMStateFailed}, &vms); err != nil || len(vms) != 7 {
		t.Errorf("FAILED VMs: %d %v", len(vms), err)
	}
	var c schemas.LauncherConsoleReply
	if err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherConsole, schemas.LauncherConsoleRequest{ID: 999}, &c); !bus.IsNotFound(err) {
		t.Errorf("console of a missing VM: %v", err)
	}
	// A command that does not match its schema.
	h.refused(schemas.CommandLauncherInstantiate, map[string]any{"template": 1}, "launcher.instantiate")
}
