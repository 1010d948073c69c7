package launcher_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
)

// TestTemplateAndVMPermissions walks OpenNebula's rules on templates and
// VMs: a template is its creator's, in their primary group, 600; others
// neither see, instantiate, update nor delete it; after chmod 604 they see
// and instantiate it and still cannot change it; chown and chgrp need
// admin, and name a user and a group that exist; the admin bits need admin
// to change. A VM is its user's, 600: another user neither sees nor
// terminates it.
func TestTemplateAndVMPermissions(t *testing.T) {
	h := newHarness(t)
	admin := h.cli
	disk := h.importFile(rawDisk(t, 1<<20, "p"), schemas.ImageCreate{Name: "p", Type: "OS"})
	text := fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\n", disk.ID)
	tid := h.createTemplate("shared", text)
	if tpl := h.template(tid); tpl.User != acl.AdminUser || tpl.Group != acl.AdminGroup || tpl.Permissions != "600" {
		t.Fatalf("oneadmin's template: owner %s, group %s, permissions %s; want oneadmin, oneadmin, 600", tpl.User, tpl.Group, tpl.Permissions)
	}
	alice := testenv.NewUser(t, h.ctx, admin, h.url, "alice", "")
	bob := testenv.NewUser(t, h.ctx, admin, h.url, "bob", "")

	h.cli = alice
	if list := h.templates(); len(list) != 0 {
		t.Errorf("alice lists %d templates, want none", len(list))
	}
	if _, err := h.askTemplate(tid); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice shows oneadmin's template: %v, want 403", err)
	}
	h.forbidden(schemas.CommandLauncherInstantiate, schemas.LauncherInstantiate{TemplateID: tid}, "user alice may not use template")
	h.forbidden(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: tid, Template: text}, "user alice may not manage template")
	h.forbidden(schemas.CommandLauncherTemplateDelete, schemas.LauncherTemplateDelete{ID: tid}, "user alice may not manage template")
	h.forbidden(schemas.CommandLauncherTemplateChmod, schemas.LauncherTemplateChmod{ID: tid, Permissions: "666"}, "user alice may not manage template")
	aliceTemplate := h.createTemplate("alices", text)
	if own := h.template(aliceTemplate); own.User != "alice" || own.Group != acl.DefaultGroup || own.Permissions != "600" {
		t.Errorf("alice's template: owner %s, group %s, permissions %s; want alice, users, 600", own.User, own.Group, own.Permissions)
	}

	// A marketplace import makes a template for its user: hers. A user may
	// not name another.
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "for-bob", Template: text, OnBehalfOf: "bob"},
		"only a service may create a template on behalf of another user")
	h.cli = h.connect(schemas.ServiceMarketDockerhub)
	var imported schemas.VMTemplate
	mustJSON(t, h.mustCall(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "imported", Template: text, OnBehalfOf: "alice"},
		schemas.EventLauncherTemplateCreated).Data, &imported)
	if imported.User != "alice" || imported.Group != acl.DefaultGroup || imported.Permissions != "600" {
		t.Errorf("a template imported for alice: owner %s, group %s, permissions %s", imported.User, imported.Group, imported.Permissions)
	}
	h.cli = alice

	// oneadmin opens it for use: alice sees and instantiates it, and
	// still may not change it.
	h.cli = admin
	h.mustCall(schemas.CommandLauncherTemplateChmod, schemas.LauncherTemplateChmod{ID: tid, Permissions: "604"}, schemas.EventLauncherTemplateUpdated)
	h.cli = alice
	if got, err := h.askTemplate(tid); err != nil || got.Permissions != "604" {
		t.Errorf("alice shows the 604 template: %+v, %v", got, err)
	}
	vmID := h.instantiate(tid, "alices-vm")
	if vm := h.vm(vmID); vm.User != "alice" || vm.Group != acl.DefaultGroup || vm.Permissions != "600" {
		t.Errorf("alice's VM: owner %s, group %s, permissions %s; want alice, users, 600", vm.User, vm.Group, vm.Permissions)
	}
	h.forbidden(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: tid, Template: text}, "user alice may not manage template")
	h.forbidden(schemas.CommandLauncherTemplateDelete, schemas.LauncherTemplateDelete{ID: tid}, "user alice may not manage template")
	h.forbidden(schemas.CommandLauncherTemplateChown, schemas.LauncherTemplateChown{ID: tid, User: "alice"}, "user alice may not admin template")

	// bob: alice's VM is not his to see or end.
	h.cli = bob
	for _, vm := range testenv.Query[schemas.LauncherVMsReply](t, h.ctx, bob, launcher.Name, schemas.QueryLauncherVMs, schemas.LauncherVMsRequest{}) {
		if vm.ID == vmID {
			t.Error("bob lists alice's VM")
		}
	}
	var vm schemas.VM
	if err := bob.Query(h.ctx, launcher.Name, schemas.QueryLauncherVM, schemas.LauncherVMRequest{ID: vmID}, &vm); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob shows alice's VM: %v, want 403", err)
	}
	var console schemas.LauncherConsoleReply
	if err := bob.Query(h.ctx, launcher.Name, schemas.QueryLauncherConsole, schemas.LauncherConsoleRequest{ID: vmID}, &console); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob reads alice's VM's console: %v, want 403", err)
	}
	var fc schemas.LauncherFirecrackerReply
	if err := bob.Query(h.ctx, launcher.Name, schemas.QueryLauncherFirecracker, schemas.LauncherFirecrackerRequest{TemplateID: &aliceTemplate}, &fc); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("bob asks for the Firecracker configuration of alice's template: %v, want 403", err)
	}
	h.forbidden(schemas.CommandLauncherTerminate, schemas.VMAction{ID: vmID}, "user bob may not manage VM")

	// chown and chgrp: oneadmin's, naming who exists.
	h.cli = admin
	h.refused(schemas.CommandLauncherTemplateChown, schemas.LauncherTemplateChown{ID: tid, User: "nobody"}, `user "nobody" does not exist`)
	h.refused(schemas.CommandLauncherTemplateChgrp, schemas.LauncherTemplateChgrp{ID: tid, Group: "nope"}, `group "nope" does not exist`)
	h.mustCall(schemas.CommandLauncherTemplateChown, schemas.LauncherTemplateChown{ID: tid, User: "alice", Group: acl.DefaultGroup}, schemas.EventLauncherTemplateUpdated)
	h.cli = alice
	h.mustCall(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: tid, Template: text}, schemas.EventLauncherTemplateUpdated)
	if tpl := h.template(tid); tpl.User != "alice" || tpl.Group != acl.DefaultGroup {
		t.Errorf("after chown and alice's update: owner %s, group %s", tpl.User, tpl.Group)
	}
	h.forbidden(schemas.CommandLauncherTemplateChmod, schemas.LauncherTemplateChmod{ID: tid, Permissions: "704"}, "of the admin bits")
	h.mustCall(schemas.CommandLauncherTemplateChmod, schemas.LauncherTemplateChmod{ID: tid, Permissions: "644"}, schemas.EventLauncherTemplateUpdated)
	h.mustCall(schemas.CommandLauncherTemplateDelete, schemas.LauncherTemplateDelete{ID: tid}, schemas.EventLauncherTemplateDeleted)
}

// forbidden checks that the launcher refuses verb as forbidden, saying want.
func (h *harness) forbidden(verb string, data any, want string) {
	h.t.Helper()
	_, err := h.call(verb, data, "template-created", "template-updated", "template-deleted", "vm-created", "vm-state-changed")
	var ce *bus.CallError
	if !errors.As(err, &ce) || ce.Code != schemas.CodeForbidden || !strings.Contains(ce.Message, want) {
		h.t.Errorf("%s %+v: %v, want a %s refusal saying %q", verb, data, err, schemas.CodeForbidden, want)
	}
}

// template asks the launcher for template id.
func (h *harness) template(id int64) schemas.VMTemplate {
	h.t.Helper()
	t, err := h.askTemplate(id)
	if err != nil {
		h.t.Fatalf("template %d: %v", id, err)
	}
	return t
}

func (h *harness) askTemplate(id int64) (schemas.VMTemplate, error) {
	var t schemas.VMTemplate
	err := h.cli.Query(h.ctx, launcher.Name, schemas.QueryLauncherTemplate, schemas.LauncherTemplateRequest{ID: &id}, &t)
	return t, err
}

func (h *harness) templates() schemas.LauncherTemplatesReply {
	h.t.Helper()
	return testenv.Query[schemas.LauncherTemplatesReply](h.t, h.ctx, h.cli, launcher.Name, schemas.QueryLauncherTemplates, schemas.LauncherTemplatesRequest{})
}
