package marketdockerhub

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestAppImportCreatesTheImageThenItsTemplate imports an app of a
// registry marketplace through the real catalog: the image is created
// first, and the template the launcher gets names it by ID.
func TestAppImportCreatesTheImageThenItsTemplate(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Kernel = "vmlinuz-6.1" })
	h.startCatalog()
	host := testenv.OCIRegistry(t)
	push(t, host, "team/app", "v1", 1)
	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})

	req := AppImport{MarketID: mk.ID, App: "team/app", Tag: "v1", Name: "app-vm",
		SizeMiB: 512, Filesystem: schemas.FilesystemXFS, Format: schemas.DiskFormatQcow2, Datastore: "default"}
	env := h.command(schemas.CommandMarketDockerhubAppImport, req)
	var imported AppImported
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppImported).Data, &imported)
	wantURL := "docker://" + host + "/team/app:v1?size=512&filesystem=xfs&format=qcow2"
	if imported.URL != wantURL || imported.Name != "app-vm" || imported.App != "team/app" || imported.MarketID != mk.ID {
		t.Errorf("app-imported = %+v, want url %s", imported, wantURL)
	}

	// The catalog holds the image app-imported names.
	img := h.catalogImage(imported.ImageID)
	if img.Name != "app-vm" || img.Datastore != "default" || img.Type != schemas.ImageTypeOS ||
		img.Attributes["MARKETPLACE"] != "local" || img.Attributes["MARKETPLACE_APP"] != "team/app" ||
		img.Attributes[market.AttrImport] != env.ID {
		t.Errorf("catalog image %d = %+v", imported.ImageID, img)
	}
	create := h.rec.Wait(t, "catalog image-create", func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.catalog.image-create.market-dockerhub" && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	var ic schemas.ImageCreate
	mustJSON(t, create.Data, &ic)
	if u, err := dockerurl.Parse(ic.Path); err != nil || ic.Path != wantURL || u.Registry != host || u.Repository != "team/app" || u.SizeMiB != 512 {
		t.Errorf("image-create path %s parses as %+v, %v", ic.Path, u, err)
	}

	// The template went out after the catalog answered, naming the image
	// by ID and the configured kernel by name and owner.
	tc := h.rec.Wait(t, "launcher template-create", func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.launcher.template-create.market-dockerhub" && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	var cmd schemas.LauncherTemplateCreate
	mustJSON(t, tc.Data, &cmd)
	if cmd.Name != "app-vm" || cmd.Template != imported.Template {
		t.Errorf("template-create = %+v, app-imported template:\n%s", cmd, imported.Template)
	}
	checkTemplate(t, cmd.Template, "app-vm", strconv.FormatInt(imported.ImageID, 10), "vmlinuz-6.1")
	if order := h.order("slipway.evt.catalog.image-created.", "slipway.cmd.launcher.template-create"); !order {
		t.Errorf("template-create was sent before the catalog's image-created:\n%s", h.rec.Dump())
	}

	var shown App
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubAppShow, schemas.MarketAppShowRequest{MarketID: &mk.ID, Name: "team/app"}, &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Template != cmd.Template || !slices.Equal(shown.Tags, []string{"v1"}) {
		t.Errorf("app-show = %+v\nwant the imported template:\n%s", shown, cmd.Template)
	}

	t.Run("a taken name is the catalog's refusal", func(t *testing.T) {
		again := h.command(schemas.CommandMarketDockerhubAppImport, req)
		var f Failed
		mustJSON(t, h.outcome(again, schemas.EventMarketDockerhubFailed).Data, &f)
		if !strings.Contains(f.Error, `the catalog refused image "app-vm"`) || !strings.Contains(f.Error, "already exists") {
			t.Errorf("second import: %+v", f)
		}
		if n := len(h.rec.All(func(m *nats.Msg) bool {
			return strings.Contains(m.Subject, ".launcher.") && m.Header.Get(envelope.HeaderCorrelationID) == again.CorrelationID
		})); n != 0 {
			t.Errorf("a refused import sent %d launcher commands", n)
		}
		if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubAppShow, schemas.MarketAppShowRequest{MarketID: &mk.ID, Name: "team/app"}, &shown); err != nil || shown.Template != cmd.Template {
			t.Errorf("the refused import changed app-show's template: %v\n%s", err, shown.Template)
		}
	})

	t.Run("a redelivery finds its image", func(t *testing.T) {
		// As if the service had died after the catalog answered and before
		// it recorded the answer: the catalog will not answer again.
		dedup, err := h.svc.core.Bus().JetStream().KeyValue(h.ctx, schemas.BucketName("slipway", schemas.BucketMarketDockerhubDedup))
		if err != nil {
			t.Fatal(err)
		}
		if err := dedup.Purge(h.ctx, market.ImportAnswerKey(env.ID)); err != nil {
			t.Fatal(err)
		}
		data, _ := json.Marshal(req)
		m := &bus.Msg{Envelope: env, Subject: "slipway.cmd.market-dockerhub.app-import." + acl.AdminUser, Data: data, Delivered: 2,
			Service: ServiceName, Name: schemas.CommandMarketDockerhubAppImport, Sender: acl.AdminUser}
		start := time.Now()
		if err := h.svc.core.HandleCommand(h.ctx, m); err != nil {
			t.Fatalf("redelivered import: %v", err)
		}
		if d := time.Since(start); d > market.CatalogCallTimeout/2 {
			t.Errorf("the redelivery took %s: it waited for the catalog", d)
		}
		e, err := dedup.Get(h.ctx, market.ImportAnswerKey(env.ID))
		if err != nil || string(e.Value()) != strconv.FormatInt(imported.ImageID, 10) {
			t.Errorf("recorded image after the redelivery: %v, %v; want %d", e, err, imported.ImageID)
		}
	})

	t.Run("an unknown app is refused", func(t *testing.T) {
		env := h.command(schemas.CommandMarketDockerhubAppImport, AppImport{MarketID: mk.ID, App: "nosuch", Name: "x"})
		var f Failed
		mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
		if !strings.Contains(f.Error, `no app "nosuch"`) {
			t.Errorf("unknown app: %+v", f)
		}
	})
}

// catalogImage asks the catalog for image id.
func (h *harness) catalogImage(id int64) schemas.Image {
	h.t.Helper()
	return testenv.Query[schemas.Image](h.t, h.ctx, h.cli, schemas.ServiceCatalog, schemas.QueryCatalogShow, map[string]int64{"id": id})
}

// order reports whether the first recorded message whose subject starts
// with first came before the first one starting with second.
func (h *harness) order(first, second string) bool {
	a, b := -1, -1
	for i, m := range h.rec.All(func(*nats.Msg) bool { return true }) {
		if a < 0 && strings.HasPrefix(m.Subject, first) {
			a = i
		}
		if b < 0 && strings.HasPrefix(m.Subject, second) {
			b = i
		}
	}
	return a >= 0 && b >= 0 && a < b
}

// checkTemplate checks an import's template: the defaults, the disk (by
// ID when imageID is given, else by name and owner) and the kernel.
func checkTemplate(t *testing.T, text, image, imageID, kernel string) {
	t.Helper()
	tmpl, err := onetemplate.ParseString(text)
	if err != nil {
		t.Fatalf("template does not parse: %v\n%s", err, text)
	}
	get := func(k string) string { v, _ := tmpl.Get(k); return v }
	if get("NAME") != image || get("CPU") != "1" || get("MEMORY") != "768" {
		t.Errorf("template:\n%s", text)
	}
	want := map[string]string{"IMAGE": image, "IMAGE_UNAME": "oneadmin"}
	if imageID != "" {
		want = map[string]string{"IMAGE_ID": imageID}
	}
	if disks := tmpl.Vectors("DISK"); len(disks) != 1 || !mapsEqual(disks[0], want) {
		t.Errorf("DISK = %v, want %v", disks, want)
	}
	osv := tmpl.Vectors("OS")
	wantDS := `$FILE[IMAGE="` + kernel + `", IMAGE_UNAME="oneadmin"]`
	if len(osv) != 1 || osv[0]["KERNEL_DS"] != wantDS || osv[0]["ROOT"] != "vda" ||
		osv[0]["KERNEL_CMD"] != "console=ttyS0 init=/.slipway/init" {
		t.Errorf("OS = %v, want KERNEL_DS %s", osv, wantDS)
	}
	ctx := tmpl.Vectors("CONTEXT")
	if len(ctx) != 1 || ctx[0]["NETWORK"] != "YES" || ctx[0]["SSH_PUBLIC_KEY"] != "$USER[SSH_PUBLIC_KEY]" {
		t.Errorf("CONTEXT = %v", ctx)
	}
	if len(tmpl.Vectors("GRAPHICS")) != 1 {
		t.Errorf("no GRAPHICS in\n%s", text)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

func TestVMTemplate(t *testing.T) {
	text := market.VMTemplate("web", "oneadmin", "kernel", market.Disk{ID: 7}, App{Description: `says "hi"`})
	checkTemplate(t, text, "web", "7", "kernel")
	tmpl, err := onetemplate.ParseString(text)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := tmpl.Get("DESCRIPTION"); v != `says "hi"` {
		t.Errorf("DESCRIPTION = %q", v)
	}
	// The text a person reads: the kernel reference quoted as OpenNebula
	// writes it.
	if !strings.Contains(text, `KERNEL_DS = "$FILE[IMAGE=\"kernel\", IMAGE_UNAME=\"oneadmin\"]"`) {
		t.Errorf("template text:\n%s", text)
	}
	// Before any import, the disk is the image an import would create.
	checkTemplate(t, market.VMTemplate("web", "oneadmin", "kernel", market.Disk{ID: -1, Name: "web", User: "oneadmin"}, App{}), "web", "", "kernel")
}

// TestAppShowBeforeImport shows the template an import under the app's
// own name would send.
func TestAppShowBeforeImport(t *testing.T) {
	h := newHarness(t)
	host := testenv.OCIRegistry(t)
	push(t, host, "team/app", "v1", 1)
	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})
	var shown App
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubAppShow, schemas.MarketAppShowRequest{MarketID: &mk.ID, Name: "team/app"}, &shown); err != nil {
		t.Fatal(err)
	}
	checkTemplate(t, shown.Template, "team/app", "", DefaultKernel)
}

func TestImportURL(t *testing.T) {
	hub := Market{ID: DefaultMarketID, Name: DefaultMarketName, Mad: MADDockerHub}
	reg := Market{ID: 100, Name: "local", Mad: MADRegistry, Registry: "registry.local:5000"}
	for _, tc := range []struct {
		mk   Market
		app  App
		req  AppImport
		want string
	}{
		{hub, App{Name: "nginx", Tags: []string{"alpine", "latest"}}, AppImport{}, "docker://nginx:latest?filesystem=ext4&format=raw"},
		{hub, App{Name: "busybox", Tags: []string{"1.36", "musl"}}, AppImport{Format: schemas.DiskFormatQcow2}, "docker://busybox:1.36?filesystem=ext4&format=qcow2"},
		{reg, App{Name: "team/app"}, AppImport{Tag: "v1", SizeMiB: 64, Filesystem: schemas.FilesystemExt2},
			"docker://registry.local:5000/team/app:v1?size=64&filesystem=ext2&format=raw"},
	} {
		got, err := importURL(tc.mk, tc.app, tc.req)
		if err != nil || got != tc.want {
			t.Errorf("importURL(%s, %s, %+v) = %s, %v; want %s", tc.mk.Name, tc.app.Name, tc.req, got, err, tc.want)
		}
		if u, err := dockerurl.Parse(got); tc.mk.Mad == MADDockerHub && (err != nil || u.Registry != "" || !strings.HasPrefix(u.Repository, "library/")) {
			t.Errorf("%s parses as %+v, %v: want a library image of Docker Hub", got, u, err)
		}
	}
	if _, err := importURL(reg, App{Name: "Team/App"}, AppImport{}); err == nil || !strings.Contains(err.Error(), "Team/App") {
		t.Errorf("an upper-case repository: %v", err)
	}
}
