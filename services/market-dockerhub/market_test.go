package marketdockerhub

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
)

func TestDockerHubListsOfficialImagesAcrossPages(t *testing.T) {
	h := newHarness(t)
	// The first start lists DockerHub by itself; count the pages of a
	// listing asked for afterwards.
	h.rec.Wait(t, "the first listing of DockerHub", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.0"
	})
	h.hub.reset()
	env := h.command(CmdRefresh, Refresh{MarketID: 0})
	var ev AppsRefreshed
	mustJSON(t, h.outcome(env, EvtAppsRefreshed).Data, &ev)
	if ev.Error != "" || ev.Apps != len(hubRepos) {
		t.Fatalf("apps-refreshed = %+v, want %d apps and no error", ev, len(hubRepos))
	}
	apps := h.apps(0)
	if len(apps) != len(hubRepos) {
		t.Fatalf("apps = %+v", apps)
	}
	for _, want := range hubRepos {
		a := appNamed(t, apps, want.Name)
		wantTags := slices.Sorted(func(yield func(string) bool) {
			for tag := range want.Tags {
				if !yield(tag) {
					return
				}
			}
		})
		got := slices.Sorted(slices.Values(a.Tags))
		if a.Description != want.Description || a.Stars != want.Stars || a.Pulls != want.Pulls ||
			!slices.Equal(got, wantTags) || a.Source != "docker://"+want.Name || a.RegTime == "" || a.MarketID != 0 {
			t.Errorf("app %s = %+v, want %+v", want.Name, a, want)
		}
		if wantSize := want.Tags[a.DefaultTag()]; a.Size != wantSize {
			t.Errorf("app %s: size %d, want %d (tag %s)", a.Name, a.Size, wantSize, a.DefaultTag())
		}
	}
	pages := 0
	for _, r := range h.hub.requests() {
		if strings.HasPrefix(r, "/v2/repositories/library/?") {
			pages++
			if !strings.Contains(r, "page_size=100") {
				t.Errorf("page request %s lacks page_size=100", r)
			}
		}
	}
	if pages != 2 {
		t.Errorf("%d page requests, want 2: %v", pages, h.hub.requests())
	}
	mk := h.markets()
	if len(mk) != 1 || mk[0].ID != 0 || mk[0].Name != DefaultMarketName || mk[0].MAD != MADDockerHub ||
		mk[0].Apps != len(hubRepos) || mk[0].RefreshedAt == "" || mk[0].Error != "" {
		t.Errorf("markets = %+v", mk)
	}

	// A second listing keeps the apps' IDs.
	env = h.command(CmdRefresh, Refresh{MarketID: 0})
	mustJSON(t, h.outcome(env, EvtAppsRefreshed).Data, &ev)
	if ev.Added != 0 || ev.Removed != 0 {
		t.Errorf("second refresh = %+v", ev)
	}
	again := h.apps(0)
	for i := range apps {
		if again[i].ID != apps[i].ID || again[i].RegTime != apps[i].RegTime {
			t.Errorf("app %s changed identity: %+v -> %+v", apps[i].Name, apps[i], again[i])
		}
	}
}

func TestDockerHubErrorIsReported(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HubAPI = "http://127.0.0.1:1" })
	env := h.command(CmdRefresh, Refresh{MarketID: 0})
	var ev AppsRefreshed
	mustJSON(t, h.outcome(env, EvtAppsRefreshed).Data, &ev)
	if !strings.Contains(ev.Error, "docker hub") || !strings.Contains(ev.Error, "127.0.0.1:1") {
		t.Errorf("apps-refreshed = %+v, want an error naming the API", ev)
	}
	if mk := h.markets(); mk[0].Error != ev.Error {
		t.Errorf("market error = %q, want %q", mk[0].Error, ev.Error)
	}
}

func TestRegistryMarketplaceListsCatalogAndTags(t *testing.T) {
	h := newHarness(t)
	host := newRegistry(t)
	push(t, host, "team/app", "v1", 1)
	latest := push(t, host, "team/app", "latest", 3)
	push(t, host, "busybox", "1.36", 1)

	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})
	if mk.ID != 1 || mk.MAD != MADRegistry || !mk.Monitoring || mk.Registry != host {
		t.Errorf("market = %+v", mk)
	}
	apps := h.apps(mk.ID)
	if len(apps) != 2 {
		t.Fatalf("apps = %+v", apps)
	}
	app := appNamed(t, apps, "team/app")
	if !slices.Equal(app.Tags, []string{"latest", "v1"}) || app.Size != layerBytes(t, latest) ||
		app.Source != "docker://"+host+"/team/app" || app.DefaultTag() != "latest" {
		t.Errorf("team/app = %+v (size want %d)", app, layerBytes(t, latest))
	}
	if bb := appNamed(t, apps, "busybox"); !slices.Equal(bb.Tags, []string{"1.36"}) || bb.DefaultTag() != "1.36" {
		t.Errorf("busybox = %+v", bb)
	}

	// Names are unique; a deleted marketplace takes its apps along.
	env := h.command(CmdMarketCreate, MarketCreate{Name: "local", Registry: host})
	var f CommandFailed
	mustJSON(t, h.outcome(env, EvtCommandFailed).Data, &f)
	if !strings.Contains(f.Error, `already named "local"`) {
		t.Errorf("duplicate name: %+v", f)
	}
	env = h.command(CmdMarketDelete, MarketDelete{ID: mk.ID})
	h.outcome(env, EvtMarketDeleted)
	var all []App
	if err := h.cli.Query(h.ctx, ServiceName, QueryApps, AppsRequest{}, &all); err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.MarketID == mk.ID {
			t.Errorf("app %+v outlived its marketplace", a)
		}
	}
	if err := h.cli.Query(h.ctx, ServiceName, QueryApps, AppsRequest{MarketID: &mk.ID}, &all); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("apps of a deleted marketplace: %v", err)
	}
	if len(h.markets()) != 1 {
		t.Errorf("after delete: markets %+v", h.markets())
	}
}

func TestScheduledRefreshAndMonitoringOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RefreshInterval = 300 * time.Millisecond })
	host := newRegistry(t)
	push(t, host, "first", "v1", 1)
	off := false
	quiet := h.createMarket(MarketCreate{Name: "quiet", Registry: host, Monitoring: &off})
	watched := h.createMarket(MarketCreate{Name: "watched", Registry: host})

	// A repository pushed now shows up without anyone asking.
	push(t, host, "second", "v1", 1)
	h.rec.Wait(t, "a scheduled listing with the new repository", func(m *nats.Msg) bool {
		var ev AppsRefreshed
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.2" &&
			json.Unmarshal(m.Data, &ev) == nil && ev.Apps == 2 && ev.Added == 1
	})
	if got := len(h.apps(watched.ID)); got != 2 {
		t.Errorf("watched has %d apps, want 2", got)
	}
	// Every tick looks at every marketplace: two more scheduled listings
	// of "watched" mean "quiet" was passed over at least twice.
	h.rec.Wait(t, "two more listings of watched", func(*nats.Msg) bool {
		return len(h.rec.All(func(m *nats.Msg) bool {
			return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.2"
		})) >= 4
	})
	if n := len(h.rec.All(func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.1"
	})); n != 0 || len(h.apps(quiet.ID)) != 0 {
		t.Errorf("quiet (monitoring off) was listed %d times and has %d apps", n, len(h.apps(quiet.ID)))
	}

	// Switching monitoring off stops the listings of "watched" too.
	on := true
	env := h.command(CmdMarketUpdate, MarketUpdate{ID: quiet.ID, Monitoring: &on})
	h.outcome(env, EvtMarketUpdated)
	h.rec.Wait(t, "a scheduled listing of quiet once monitored", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.1"
	})
	if got := len(h.apps(quiet.ID)); got != 2 {
		t.Errorf("quiet has %d apps once monitored, want 2", got)
	}
}

func TestAppImportSendsImageAndTemplate(t *testing.T) {
	h := newHarness(t)
	host := newRegistry(t)
	push(t, host, "team/app", "v1", 1)
	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})

	env := h.command(CmdAppImport, AppImport{MarketID: mk.ID, App: "team/app", Tag: "v1", Name: "app-vm",
		SizeMiB: 512, Filesystem: "xfs", Format: "qcow2", Datastore: "default"})
	create := h.rec.Wait(t, "catalog image-create", func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.catalog.image-create" && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	if err := schemas.Validate(schemas.KindCommand, "catalog", "image-create", create.Data); err != nil {
		t.Errorf("image-create is not valid: %v", err)
	}
	var ic schemas.ImageCreate
	mustJSON(t, create.Data, &ic)
	wantURL := "docker://" + host + "/team/app:v1?size=512&filesystem=xfs&format=qcow2"
	if ic.Name != "app-vm" || ic.Path != wantURL || ic.Datastore != "default" || ic.Attributes["MARKETPLACE"] != "local" {
		t.Errorf("image-create = %+v, want path %s", ic, wantURL)
	}
	u, err := dockerurl.Parse(ic.Path)
	if err != nil || u.Registry != host || u.Repository != "team/app" || u.Tag != "v1" || u.SizeMiB != 512 {
		t.Errorf("the docker URL parses as %+v, %v", u, err)
	}

	tc := h.rec.Wait(t, "launcher template-create", func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.launcher.template-create" && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	var cmd TemplateCreate
	mustJSON(t, tc.Data, &cmd)
	checkTemplate(t, cmd.Template, "app-vm")
	h.outcome(env, EvtAppImported)

	var shown App
	if err := h.cli.Query(h.ctx, ServiceName, QueryAppShow, AppShowRequest{MarketID: &mk.ID, Name: "team/app"}, &shown); err != nil {
		t.Fatal(err)
	}
	if shown.Template != cmd.Template || !slices.Equal(shown.Tags, []string{"v1"}) {
		t.Errorf("app-show = %+v\nwant the imported template:\n%s", shown, cmd.Template)
	}

	// Docker Hub apps import as library images, defaults filled in.
	h.outcome(h.command(CmdRefresh, Refresh{MarketID: 0}), EvtAppsRefreshed)
	env = h.command(CmdAppImport, AppImport{MarketID: 0, App: "nginx", Name: "nginx"})
	var imported AppImported
	mustJSON(t, h.outcome(env, EvtAppImported).Data, &imported)
	if imported.URL != "docker://nginx:latest?filesystem=ext4&format=raw" {
		t.Errorf("hub import URL = %s", imported.URL)
	}
	if u, err := dockerurl.Parse(imported.URL); err != nil || u.Repository != "library/nginx" || u.Registry != "" {
		t.Errorf("hub import URL parses as %+v, %v", u, err)
	}

	env = h.command(CmdAppImport, AppImport{MarketID: mk.ID, App: "nosuch", Name: "x"})
	var f CommandFailed
	mustJSON(t, h.outcome(env, EvtCommandFailed).Data, &f)
	if !strings.Contains(f.Error, `no app "nosuch"`) {
		t.Errorf("unknown app: %+v", f)
	}
}

func checkTemplate(t *testing.T, text, image string) {
	t.Helper()
	tmpl, err := onetemplate.ParseString(text)
	if err != nil {
		t.Fatalf("template does not parse: %v\n%s", err, text)
	}
	get := func(k string) string { v, _ := tmpl.Get(k); return v }
	if get("NAME") != image || get("CPU") != "1" || get("MEMORY") != "768" {
		t.Errorf("template:\n%s", text)
	}
	disks := tmpl.Vectors("DISK")
	if len(disks) != 1 || disks[0]["IMAGE"] != image || disks[0]["IMAGE_UNAME"] != "oneadmin" {
		t.Errorf("DISK = %v", disks)
	}
	osv := tmpl.Vectors("OS")
	if len(osv) != 1 || osv[0]["KERNEL_DS"] != `$FILE[IMAGE="kernel"]` || osv[0]["ROOT"] != "vda" ||
		osv[0]["KERNEL_CMD"] != "console=ttyS0 init=/.slipway/init" {
		t.Errorf("OS = %v", osv)
	}
	ctx := tmpl.Vectors("CONTEXT")
	if len(ctx) != 1 || ctx[0]["NETWORK"] != "YES" || ctx[0]["SSH_PUBLIC_KEY"] != "$USER[SSH_PUBLIC_KEY]" {
		t.Errorf("CONTEXT = %v", ctx)
	}
	if len(tmpl.Vectors("GRAPHICS")) != 1 {
		t.Errorf("no GRAPHICS in\n%s", text)
	}
}

func TestVMTemplateWithImageID(t *testing.T) {
	tmpl, err := onetemplate.ParseString(VMTemplate("web", "oneadmin", 7, App{Description: `says "hi"`}))
	if err != nil {
		t.Fatal(err)
	}
	if d := tmpl.Vectors("DISK"); len(d) != 1 || d[0]["IMAGE_ID"] != "7" || d[0]["IMAGE"] != "" {
		t.Errorf("DISK = %v", d)
	}
	if v, _ := tmpl.Get("DESCRIPTION"); v != `says "hi"` {
		t.Errorf("DESCRIPTION = %q", v)
	}
}

func TestResolvePinsTheRegistrysDigest(t *testing.T) {
	h := newHarness(t)
	host := newRegistry(t)
	img := push(t, host, "team/app", "v1", 2)
	ref, _ := name.NewTag(host + "/team/app:v1")
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}

	env := h.command(CmdResolve, Resolve{ImageID: 5, URL: "docker://" + host + "/team/app?tag=v1&size=1024"})
	m := h.outcome(env, EvtResolved)
	if m.Subject != "slipway.evt.market-dockerhub.resolved.5" {
		t.Errorf("subject %s", m.Subject)
	}
	var r Resolved
	mustJSON(t, m.Data, &r)
	if r.ImageID != 5 || r.Digest != desc.Digest.String() || r.Reference != host+"/team/app@"+desc.Digest.String() ||
		r.Kind != "container" || r.Size != layerBytes(t, img) || r.Platform != "linux/"+runtime.GOARCH {
		t.Errorf("resolved = %+v, want digest %s", r, desc.Digest)
	}

	env = h.command(CmdResolve, Resolve{ImageID: 6, URL: "docker://" + host + "/team/app:nosuchtag"})
	var f Failed
	m = h.outcome(env, EvtFailed)
	mustJSON(t, m.Data, &f)
	if m.Subject != "slipway.evt.market-dockerhub.failed.6" || f.ImageID != 6 || !strings.Contains(f.Error, "MANIFEST_UNKNOWN") {
		t.Errorf("unknown tag: %s %+v, want the registry's MANIFEST_UNKNOWN", m.Subject, f)
	}
	env = h.command(CmdResolve, Resolve{ImageID: 7, URL: "docker://" + host + "/nosuchrepo:v1"})
	mustJSON(t, h.outcome(env, EvtFailed).Data, &f)
	if f.ImageID != 7 || !strings.Contains(f.Error, "UNKNOWN") {
		t.Errorf("unknown repository: %+v", f)
	}
	env = h.command(CmdResolve, Resolve{ImageID: 8, URL: "docker://" + host + "/team/app?filesystem=ntfs"})
	mustJSON(t, h.outcome(env, EvtFailed).Data, &f)
	if f.ImageID != 8 || !strings.Contains(f.Error, "ntfs") {
		t.Errorf("bad URL: %+v", f)
	}
}

func TestQueriesRefuseBadRequests(t *testing.T) {
	h := newHarness(t)
	var mk Market
	if err := h.cli.Query(h.ctx, ServiceName, QueryShow, ShowRequest{Name: DefaultMarketName}, &mk); err != nil || mk.ID != 0 {
		t.Errorf("show DockerHub = %+v, %v", mk, err)
	}
	id := int64(42)
	err := h.cli.Query(h.ctx, ServiceName, QueryShow, ShowRequest{ID: &id}, &mk)
	if err == nil || !strings.Contains(err.Error(), "marketplace 42 does not exist") {
		t.Errorf("show 42: %v", err)
	}
	err = h.cli.Query(h.ctx, ServiceName, QueryAppShow, AppShowRequest{Name: "nosuchapp"}, &App{})
	if err == nil || !strings.Contains(err.Error(), `no app is named "nosuchapp"`) {
		t.Errorf("app-show of an unknown app: %v", err)
	}
}

func TestShutdownInterruptsASlowListing(t *testing.T) {
	entered := make(chan struct{}, 1)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-r.Context().Done() // answers only when the client gives up
	}))
	defer slow.Close()
	h := newHarness(t, func(c *Config) { c.HubAPI = slow.URL })
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the first listing never reached Hub")
	}
	start := time.Now()
	h.stop()
	if d := time.Since(start); d > drainTimeout/2 {
		t.Errorf("shutdown took %s with a listing in flight", d)
	}
}
