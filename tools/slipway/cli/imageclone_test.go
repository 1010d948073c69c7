package cli

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// TestOrphans: OpenNebula's three ways a template's DISK names an image
// (IMAGE_ID; IMAGE with IMAGE_UNAME; IMAGE alone, an image of the
// template's owner); a kernel named only by KERNEL_DS is an orphan, as in
// OpenNebula.
func TestOrphans(t *testing.T) {
	img := func(id int, name, user string) render.Image { return render.Image{ID: id, Name: name, User: user} }
	images := []render.Image{
		img(0, "by-id", "alice"), img(1, "named", "bob"), img(2, "named", "alice"),
		img(3, "owned", "carol"), img(4, "owned", "alice"), img(5, "vmlinuz", "alice"),
		img(6, "lonely", "alice"),
	}
	templates := []schemas.VMTemplate{
		{ID: 0, Name: "a", User: "alice", Template: `DISK = [ IMAGE_ID = 0 ]
DISK = [ IMAGE = "named", IMAGE_UNAME = "bob" ]`},
		{ID: 1, Name: "c", User: "carol", Template: `DISK = [ IMAGE = "owned" ]
OS = [ KERNEL_DS = "$FILE[IMAGE=\"vmlinuz\", IMAGE_UNAME=\"alice\"]", ROOT = "vda" ]`},
	}
	got, err := orphans(images, templates)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int
	for _, i := range got {
		ids = append(ids, i.ID)
	}
	// alice's "named" (2) is not bob's; carol's template names carol's
	// "owned" (3), not alice's (4).
	if want := []int{2, 4, 5, 6}; !slices.Equal(ids, want) {
		t.Fatalf("orphans %v, want %v", ids, want)
	}
	for _, bad := range []string{"DISK = [ IMAGE_ID = 1", "DISK = [ IMAGE_ID = x ]"} {
		_, err = orphans(images, []schemas.VMTemplate{{ID: 9, Name: "broken", Template: bad}})
		if err == nil || !strings.Contains(err.Error(), "template 9 (broken)") {
			t.Errorf("template %q: %v", bad, err)
		}
	}
}

// TestImageCloneLockOrphansEndToEnd drives clone, lock, unlock and
// orphans through the CLI against the whole in-process stack.
func TestImageCloneLockOrphansEndToEnd(t *testing.T) {
	flags, _ := stack(t)
	must(t, slipway(t, flags, "image", "create", "--name", "base", "--type", "DATABLOCK", "--size", "4", "--wait", "--timeout", "2m"))
	r := must(t, slipway(t, flags, "image", "clone", "base", "copy", "--timeout", "2m"))
	if !strings.Contains(r.stdout, "ID: 1") || !strings.Contains(r.stdout, "READY") {
		t.Fatalf("clone:\n%s%s", r.stdout, r.stderr)
	}
	var src, dst listed
	mustJSONOut(t, must(t, slipway(t, flags, "image", "show", "base", "--json")), &src)
	mustJSONOut(t, must(t, slipway(t, flags, "image", "show", "copy", "--json")), &dst)
	if dst.SHA256 == "" || dst.SHA256 != src.SHA256 || dst.State != "READY" || src.State != "READY" {
		t.Fatalf("source %+v\nclone %+v", src, dst)
	}
	r = slipway(t, flags, "image", "clone", "base", "x", "--datastore", "files")
	if r.code != 1 || !strings.Contains(r.stderr, "a clone stays on its source's driver") {
		t.Errorf("clone into the files datastore: exit %d, stderr %q", r.code, r.stderr)
	}

	mustShow(t, flags, []string{"image", "show", "base"}, "LOCK           : None")
	must(t, slipway(t, flags, "image", "lock", "base", "--manage"))
	mustShow(t, flags, []string{"image", "show", "base"}, "LOCK           : MANAGE (by oneadmin since ")
	r = slipway(t, flags, "image", "rename", "base", "renamed")
	if r.code != 1 || !strings.Contains(r.stderr, "image 0 is locked (MANAGE) by oneadmin since") {
		t.Errorf("rename of a locked image: exit %d, stderr %q", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "image", "clone", "base", "copy2", "--timeout", "2m")) // use: not locked by --manage
	must(t, slipway(t, flags, "image", "unlock", "base"))
	mustShow(t, flags, []string{"image", "show", "base"}, "LOCK           : None")
	must(t, slipway(t, flags, "image", "rename", "base", "renamed"))

	tmpl := testenv.WriteFile(t, filepath.Join(t.TempDir(), "t.tmpl"), "NAME = \"t\"\nMEMORY = 128\nDISK = [ IMAGE = \"copy\" ]\nDISK = [ IMAGE_ID = 2 ]\n")
	must(t, slipway(t, flags, "template", "create", tmpl))
	r = must(t, slipway(t, flags, "image", "orphans", "--json"))
	var orphaned []listed
	mustJSONOut(t, r, &orphaned)
	if len(orphaned) != 1 || orphaned[0].Name != "renamed" {
		t.Fatalf("orphans: %s", r.stdout)
	}
	mustShow(t, flags, []string{"image", "orphans"}, "ID USER", "renamed")
}

func mustJSONOut(t *testing.T, r result, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
}
