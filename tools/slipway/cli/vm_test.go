package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestTemplateAndVMCommands drives the launcher through the CLI against
// the whole in-process stack. The VM names an image that does not exist,
// so it fails in PROLOG without booting: the commands are what is tested
// here (the launcher's own tests boot QEMU).
func TestTemplateAndVMCommands(t *testing.T) {
	flags, _ := stack(t)
	dir := t.TempDir()
	file := testenv.WriteFile(t, filepath.Join(dir, "web.tmpl"), "NAME = \"web\"\nMEMORY = 128\nDISK = [ IMAGE_ID = 999 ]\n")
	bad := testenv.WriteFile(t, filepath.Join(dir, "bad.tmpl"), "DISK = [ IMAGE_ID = 1\n")

	r := must(t, slipway(t, flags, "template", "create", file), "template create")
	if strings.TrimSpace(r.stdout) != "ID: 0" {
		t.Fatalf("template create printed %q, want ID: 0", r.stdout)
	}
	r = slipway(t, flags, "template", "create", bad)
	if r.code != 1 || !strings.Contains(r.stderr, "not closed") {
		t.Errorf("template create of a bad template: exit %d, stderr %q", r.code, r.stderr)
	}
	mustShow(t, flags, []string{"template", "list"}, "web", "NAME")
	mustShow(t, flags, []string{"template", "show", "web"}, "TEMPLATE CONTENTS", "IMAGE_ID = 999",
		"GROUP          : oneadmin", "PERMISSIONS\nOWNER          : um-\nGROUP          : ---\nOTHER          : ---")
	must(t, slipway(t, flags, "template", "chmod", "web", "640"), "template chmod")
	mustShow(t, flags, []string{"template", "show", "web"}, "GROUP          : u--")
	r = slipway(t, flags, "template", "chgrp", "web", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, `group "nope" does not exist`) {
		t.Errorf("template chgrp to a missing group: exit %d, stderr %q", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "template", "chgrp", "web", "users"), "template chgrp")
	must(t, slipway(t, flags, "template", "chown", "web", "oneadmin", "oneadmin"), "template chown")
	mustShow(t, flags, []string{"template", "show", "web"}, "GROUP          : oneadmin", "USER           : oneadmin")
	testenv.WriteFile(t, file, "NAME = \"web\"\nMEMORY = 256\nDISK = [ IMAGE_ID = 999 ]\n")
	must(t, slipway(t, flags, "template", "update", "0", file), "template update")
	r = must(t, slipway(t, flags, "template", "show", "0", "--json"), "template show --json")
	var tmpl schemas.VMTemplate
	if err := json.Unmarshal([]byte(r.stdout), &tmpl); err != nil || !strings.Contains(tmpl.Template, "MEMORY = 256") {
		t.Errorf("template after update: %+v %v", tmpl, err)
	}

	r = must(t, slipway(t, flags, "template", "instantiate", "web", "--name", "web-a"), "template instantiate")
	if strings.TrimSpace(r.stdout) != "ID: 0" {
		t.Fatalf("instantiate printed %q, want ID: 0", r.stdout)
	}
	r = slipway(t, flags, "template", "instantiate", "0", "--wait", "--timeout", "1m")
	if r.code != 1 || !strings.Contains(r.stdout, "ID: 1") || !strings.Contains(r.stderr, "image 999 does not exist") {
		t.Errorf("instantiate --wait of a VM that fails: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	var vm map[string]any
	deadline := time.Now().Add(time.Minute)
	for {
		r = must(t, slipway(t, flags, "vm", "show", "web-a", "--json"), "vm show --json")
		vm = nil
		if err := json.Unmarshal([]byte(r.stdout), &vm); err != nil {
			t.Fatalf("vm show --json: %v\n%s", err, r.stdout)
		}
		if vm["state"] == "FAILED" || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	for _, k := range []string{"id", "name", "state", "template", "disks", "template_id", "error"} {
		if _, ok := vm[k]; !ok {
			t.Errorf("vm show --json lacks %q: %s", k, r.stdout)
		}
	}
	if vm["state"] != "FAILED" {
		t.Fatalf("VM web-a: %v", vm["state"])
	}
	mustShow(t, flags, []string{"vm", "list"}, "web-a", "fail")
	mustShow(t, flags, []string{"vm", "show", "0"}, "VIRTUAL MACHINE 0 INFORMATION", "image 999 does not exist",
		"USER           : oneadmin", "PERMISSIONS\nOWNER          : um-")
	must(t, slipway(t, flags, "vm", "console", "0"), "vm console")
	r = slipway(t, flags, "vm", "resume", "0")
	if r.code != 1 || !strings.Contains(r.stderr, "only a VM in POWEROFF can be resumed") {
		t.Errorf("vm resume of a FAILED VM: exit %d %s", r.code, r.stderr)
	}
	r = slipway(t, flags, "vm", "disk-save-as", "0", "0", "--name", "x")
	if r.code != 1 || !strings.Contains(r.stderr, "FAILED") {
		t.Errorf("vm disk-save-as of a FAILED VM: exit %d %s", r.code, r.stderr)
	}
	r = must(t, slipway(t, flags, "vm", "terminate", "web-a", "--wait"), "vm terminate")
	if !strings.Contains(r.stdout, "VM 0: EPILOG") || !strings.Contains(r.stdout, "VM 0: DONE") {
		t.Errorf("vm terminate --wait:\n%s", r.stdout)
	}
	r = must(t, slipway(t, flags, "vm", "list"), "vm list")
	if strings.Contains(r.stdout, "web-a") {
		t.Errorf("vm list shows a DONE VM without --all:\n%s", r.stdout)
	}
	r = must(t, slipway(t, flags, "vm", "list", "--all", "--json"), "vm list --all")
	if !strings.Contains(r.stdout, `"DONE"`) {
		t.Errorf("vm list --all --json:\n%s", r.stdout)
	}
	r = slipway(t, flags, "vm", "show", "42")
	if r.code != 1 || !strings.Contains(r.stderr, "VM 42 does not exist") {
		t.Errorf("vm show of a missing VM: exit %d %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "template", "delete", "web"), "template delete")
	r = slipway(t, flags, "template", "show", "web")
	if r.code != 1 || !strings.Contains(r.stderr, `no template is named "web"`) {
		t.Errorf("template show after delete: exit %d %s", r.code, r.stderr)
	}
}

func TestVMAge(t *testing.T) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]string{
		"2025-01-02T03:04:00Z": "0d 00:00:05",
		"2024-12-31T01:00:00Z": "2d 02:04:05",
		"garbage":              "-",
	} {
		if got := age(in, now); got != want {
			t.Errorf("age(%q) = %q, want %q", in, got, want)
		}
	}
}
