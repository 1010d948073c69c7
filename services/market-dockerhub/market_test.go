package marketdockerhub

import (
	"encoding/json"
	"fmt"
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
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

func TestDockerHubListsOfficialImagesAcrossPages(t *testing.T) {
	h := newHarness(t)
	// The first start lists DockerHub by itself; count the pages of a
	// listing asked for afterwards.
	h.rec.Wait(t, "the first listing of DockerHub", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.3"
	})
	h.hub.reset()
	env := h.command(schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: DefaultMarketID})
	var ev AppsRefreshed
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
	if ev.Error != "" || ev.Apps != int64(len(hubRepos)) {
		t.Fatalf("apps-refreshed = %+v, want %d apps and no error", ev, len(hubRepos))
	}
	apps := h.apps(DefaultMarketID)
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
			!slices.Equal(got, wantTags) || a.Source != "docker://"+want.Name || a.Regtime == "" || a.MarketID != DefaultMarketID {
			t.Errorf("app %s = %+v, want %+v", want.Name, a, want)
		}
		if wantSize := want.Tags[dockerurl.PickTag(a.Tags)]; a.Size != wantSize {
			t.Errorf("app %s: size %d, want %d (tag %s)", a.Name, a.Size, wantSize, dockerurl.PickTag(a.Tags))
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
	if len(mk) != 1 || mk[0].ID != DefaultMarketID || mk[0].Name != DefaultMarketName || mk[0].Mad != MADDockerHub ||
		mk[0].Apps != int64(len(hubRepos)) || mk[0].RefreshedAt == "" || mk[0].Error != "" {
		t.Errorf("markets = %+v", mk)
	}

	// A second listing keeps the apps' IDs.
	env = h.command(schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: DefaultMarketID})
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
	if ev.Added != 0 || ev.Removed != 0 {
		t.Errorf("second refresh = %+v", ev)
	}
	again := h.apps(DefaultMarketID)
	for i := range apps {
		if again[i].ID != apps[i].ID || again[i].Regtime != apps[i].Regtime {
			t.Errorf("app %s changed identity: %+v -> %+v", apps[i].Name, apps[i], again[i])
		}
	}
}

func TestDockerHubErrorIsReported(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.HubAPI = "http://127.0.0.1:1" })
	env := h.command(schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: DefaultMarketID})
	var ev AppsRefreshed
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
	if !strings.Contains(ev.Error, "docker hub") || !strings.Contains(ev.Error, "127.0.0.1:1") {
		t.Errorf("apps-refreshed = %+v, want an error naming the API", ev)
	}
	if mk := h.markets(); mk[0].Error != ev.Error {
		t.Errorf("market error = %q, want %q", mk[0].Error, ev.Error)
	}
}

func TestRegistryMarketplaceListsCatalogAndTags(t *testing.T) {
	h := newHarness(t)
	host := testenv.OCIRegistry(t)
	push(t, host, "team/app", "v1", 1)
	latest := push(t, host, "team/app", "latest", 3)
	push(t, host, "busybox", "1.36", 1)

	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})
	if mk.ID != market.FirstCreatedID || mk.Mad != MADRegistry || !mk.Monitoring || mk.Registry != host {
		t.Errorf("market = %+v", mk)
	}
	apps := h.apps(mk.ID)
	if len(apps) != 2 {
		t.Fatalf("apps = %+v", apps)
	}
	app := appNamed(t, apps, "team/app")
	if !slices.Equal(app.Tags, []string{"latest", "v1"}) || app.Size != layerBytes(t, latest) ||
		app.Source != "docker://"+host+"/team/app" || dockerurl.PickTag(app.Tags) != "latest" {
		t.Errorf("team/app = %+v (size want %d)", app, layerBytes(t, latest))
	}
	if bb := appNamed(t, apps, "busybox"); !slices.Equal(bb.Tags, []string{"1.36"}) || dockerurl.PickTag(bb.Tags) != "1.36" {
		t.Errorf("busybox = %+v", bb)
	}

	// Names are unique; a deleted marketplace takes its apps along.
	env := h.command(schemas.CommandMarketDockerhubMarketCreate, MarketCreate{Name: "local", Registry: host})
	var f Failed
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if !strings.Contains(f.Error, `already named "local"`) || f.Code != schemas.CodeConflict {
		t.Errorf("duplicate name: %+v", f)
	}
	env = h.command(schemas.CommandMarketDockerhubMarketDelete, MarketDelete{ID: mk.ID})
	h.outcome(env, schemas.EventMarketDockerhubMarketDeleted)
	var all []App
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{}, &all); err != nil {
		t.Fatal(err)
	}
	for _, a := range all {
		if a.MarketID == mk.ID {
			t.Errorf("app %+v outlived its marketplace", a)
		}
	}
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{MarketID: &mk.ID}, &all); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("apps of a deleted marketplace: %v", err)
	}
	if len(h.markets()) != 1 {
		t.Errorf("after delete: markets %+v", h.markets())
	}
}

func TestScheduledRefreshAndMonitoringOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RefreshInterval = 300 * time.Millisecond })
	host := testenv.OCIRegistry(t)
	push(t, host, "first", "v1", 1)
	off := false
	quiet := h.createMarket(MarketCreate{Name: "quiet", Registry: host, Monitoring: &off})
	watched := h.createMarket(MarketCreate{Name: "watched", Registry: host})

	// A repository pushed now shows up without anyone asking.
	push(t, host, "second", "v1", 1)
	h.rec.Wait(t, "a scheduled listing with the new repository", func(m *nats.Msg) bool {
		var ev AppsRefreshed
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.101" &&
			json.Unmarshal(m.Data, &ev) == nil && ev.Apps == 2 && ev.Added == 1
	})
	if got := len(h.apps(watched.ID)); got != 2 {
		t.Errorf("watched has %d apps, want 2", got)
	}
	// Every tick looks at every marketplace: two more scheduled listings
	// of "watched" mean "quiet" was passed over at least twice.
	h.rec.Wait(t, "two more listings of watched", func(*nats.Msg) bool {
		return len(h.rec.All(func(m *nats.Msg) bool {
			return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.101"
		})) >= 4
	})
	if n := len(h.rec.All(func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.100"
	})); n != 0 || len(h.apps(quiet.ID)) != 0 {
		t.Errorf("quiet (monitoring off) was listed %d times and has %d apps", n, len(h.apps(quiet.ID)))
	}

	// Switching monitoring off stops the listings of "watched" too.
	on := true
	env := h.command(schemas.CommandMarketDockerhubMarketUpdate, MarketUpdate{ID: quiet.ID, Monitoring: &on})
	h.outcome(env, schemas.EventMarketDockerhubMarketUpdated)
	h.rec.Wait(t, "a scheduled listing of quiet once monitored", func(m *nats.Msg) bool {
		return m.Subject == "slipway.evt.market-dockerhub.apps-refreshed.100"
	})
	if got := len(h.apps(quiet.ID)); got != 2 {
		t.Errorf("quiet has %d apps once monitored, want 2", got)
	}
}

func TestResolvePinsTheRegistrysDigest(t *testing.T) {
	h := newHarness(t)
	host := testenv.OCIRegistry(t)
	img := push(t, host, "team/app", "v1", 2)
	ref, _ := name.NewTag(host + "/team/app:v1")
	desc, err := remote.Head(ref)
	if err != nil {
		t.Fatal(err)
	}

	env := h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 5, URL: "docker://" + host + "/team/app?tag=v1&size=1024"})
	m := h.outcome(env, schemas.EventMarketDockerhubResolved)
	if m.Subject != "slipway.evt.market-dockerhub.resolved.5" {
		t.Errorf("subject %s", m.Subject)
	}
	var r Resolved
	mustJSON(t, m.Data, &r)
	if r.ImageID != 5 || r.Digest != desc.Digest.String() || r.Reference != host+"/team/app@"+desc.Digest.String() ||
		r.Kind != "container" || r.Size != layerBytes(t, img) || r.Platform != "linux/"+runtime.GOARCH {
		t.Errorf("resolved = %+v, want digest %s", r, desc.Digest)
	}

	env = h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 6, URL: "docker://" + host + "/team/app:nosuchtag"})
	var f Failed
	m = h.outcome(env, schemas.EventMarketDockerhubFailed)
	mustJSON(t, m.Data, &f)
	if m.Subject != "slipway.evt.market-dockerhub.failed.6" || f.ImageID == nil || *f.ImageID != 6 || !strings.Contains(f.Error, "MANIFEST_UNKNOWN") ||
		f.Code != schemas.CodeSourceNotFound || f.Retryable {
		t.Errorf("unknown tag: %s %+v, want the registry's MANIFEST_UNKNOWN", m.Subject, f)
	}
	env = h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 7, URL: "docker://" + host + "/nosuchrepo:v1"})
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if f.ImageID == nil || *f.ImageID != 7 || !strings.Contains(f.Error, "UNKNOWN") || f.Code != schemas.CodeSourceNotFound {
		t.Errorf("unknown repository: %+v", f)
	}
	env = h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 8, URL: "docker://" + host + "/team/app?filesystem=ntfs"})
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if f.ImageID == nil || *f.ImageID != 8 || !strings.Contains(f.Error, "ntfs") || f.Code != schemas.CodeInvalidInput {
		t.Errorf("bad URL: %+v", f)
	}
	// A registry whose name does not resolve: final at once, no attempt to retry.
	env = h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 10, URL: "docker://nonexistent.invalid/team/app:v1"})
	f = Failed{}
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if f.ImageID == nil || *f.ImageID != 10 || f.Code != schemas.CodeHostNotFound || f.Retryable || f.NextAttemptAt != "" {
		t.Errorf("unresolvable registry: %+v, want a final host-not-found failure", f)
	}
}

// TestResolveShowsEachFailedAttempt: a registry that answers 503 is asked
// again on the next deliveries; each failed attempt is published, with its
// code and when the next comes, and the last is final (retryable, with no
// next attempt).
func TestResolveShowsEachFailedAttempt(t *testing.T) {
	h := newHarness(t)
	busy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "busy", http.StatusServiceUnavailable)
	}))
	defer busy.Close()
	host := strings.TrimPrefix(busy.URL, "http://")
	env := h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 11, URL: "docker://" + host + "/team/app:v1"})
	for attempt := int64(1); attempt <= maxResolveDeliveries; attempt++ {
		m := h.rec.Wait(t, fmt.Sprintf("failed event of attempt %d", attempt), func(m *nats.Msg) bool {
			var f Failed
			return strings.HasPrefix(m.Subject, "slipway.evt.market-dockerhub.failed.11") &&
				m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID &&
				json.Unmarshal(m.Data, &f) == nil && f.Attempt == attempt
		})
		var f Failed
		mustJSON(t, m.Data, &f)
		final := attempt == maxResolveDeliveries
		if f.Code != schemas.CodeUnavailable || !f.Retryable || (f.NextAttemptAt == "") != final || f.MaxAttempts != maxResolveDeliveries {
			t.Errorf("attempt %d: %+v", attempt, f)
		}
	}
}

func TestQueriesRefuseBadRequests(t *testing.T) {
	h := newHarness(t)
	var mk Market
	if err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubShow, schemas.MarketShowRequest{Name: DefaultMarketName}, &mk); err != nil || mk.ID != DefaultMarketID {
		t.Errorf("show DockerHub = %+v, %v", mk, err)
	}
	id := int64(42)
	err := h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubShow, schemas.MarketShowRequest{ID: &id}, &mk)
	if err == nil || !strings.Contains(err.Error(), "marketplace 42 does not exist") {
		t.Errorf("show 42: %v", err)
	}
	err = h.cli.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubAppShow, schemas.MarketAppShowRequest{Name: "nosuchapp"}, &App{})
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
	if d := time.Since(start); d > market.DrainTimeout/2 {
		t.Errorf("shutdown took %s with a listing in flight", d)
	}
}

// TestInvalidCommandsAreRefused: a command that does not match its schema
// gets one failed event naming the field, and is not retried.
func TestInvalidCommandsAreRefused(t *testing.T) {
	h := newHarness(t)
	for _, tc := range []struct {
		verb, payload, want string
	}{
		{schemas.CommandMarketDockerhubAppImport, `{"market_id":0,"app":"nginx","name":"web","size_mib":0}`, "market-dockerhub.app-import: /size_mib: must be >= 1"},
		{schemas.CommandMarketDockerhubAppImport, `{"market_id":0,"app":"nginx","name":"web","format":"vmdk"}`, `/format: is "vmdk"`},
		{schemas.CommandMarketDockerhubAppImport, `{"market_id":0,"app":"nginx"}`, "/name: is required"},
		{schemas.CommandMarketDockerhubMarketCreate, `{"name":"x","registry":"r:5000","colour":"red"}`, "/colour: is not allowed"},
		{schemas.CommandMarketDockerhubMarketUpdate, `{"id":3,"endpoint":"ftp://hub"}`, "/endpoint:"},
		{schemas.CommandMarketDockerhubRefresh, `{}`, "market-dockerhub.refresh: /market_id: is required"},
		{schemas.CommandMarketDockerhubMarketDelete, `{"id":-1}`, "/id: must be >= 0"},
		// Past the schema, the service's own rules say what is wrong.
		{schemas.CommandMarketDockerhubMarketCreate, `{"name":"x","registry":"http://r:5000/v2"}`, "want host[:port], without a scheme or a path"},
	} {
		env := h.command(tc.verb, json.RawMessage(tc.payload))
		var f Failed
		mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
		code := schemas.CodeInvalidCommand
		if strings.Contains(tc.want, "host[:port]") {
			code = schemas.CodeConflict // the service's own rule, past the schema
		}
		if !strings.Contains(f.Error, tc.want) || f.Command != "slipway.cmd.market-dockerhub."+tc.verb+".oneadmin" || f.Code != code {
			t.Errorf("%s %s: %+v, want an error containing %q, code %s", tc.verb, tc.payload, f, tc.want, code)
		}
	}
	// A retried command would be refused again: wait a moment and count.
	time.Sleep(2 * time.Second)
	if n := len(h.rec.All(func(m *nats.Msg) bool {
		return strings.HasPrefix(m.Subject, "slipway.evt.market-dockerhub.failed.")
	})); n != 8 {
		t.Errorf("%d failed events for 8 invalid commands:\n%s", n, h.rec.Dump())
	}
}

// TestRefusedAddressesFailClearly: without SLIPWAY_FETCH_ALLOW, Hub's API,
// a registry marketplace and a docker:// image on loopback are refused,
// each failure naming the address and the setting, and nothing reaches
// them.
func TestRefusedAddressesFailClearly(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Guard = nil })
	hubHost := strings.TrimPrefix(h.hub.srv.URL, "http://")
	setting := " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it"

	env := h.command(schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: DefaultMarketID})
	var ev AppsRefreshed
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
	if !strings.HasPrefix(ev.Error, "docker hub: GET "+h.hub.srv.URL+"/v2/repositories/library/") || !strings.HasSuffix(ev.Error, ": refusing to connect to "+hubHost+setting) {
		t.Errorf("Hub listing: %+v, want the refusal of %s", ev, hubHost)
	}
	if mk := h.markets(); mk[0].Error != ev.Error {
		t.Errorf("market error = %q, want %q", mk[0].Error, ev.Error)
	}
	if reqs := h.hub.requests(); len(reqs) != 0 {
		t.Errorf("the Hub API saw %v", reqs)
	}

	host := testenv.OCIRegistry(t)
	push(t, host, "team/app", "v1", 1)
	env = h.command(schemas.CommandMarketDockerhubMarketCreate, MarketCreate{Name: "local", Registry: host})
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
	if !strings.Contains(ev.Error, "registry "+host) || !strings.Contains(ev.Error, "refusing to connect to "+host+setting) || ev.Apps != 0 {
		t.Errorf("registry listing: %+v, want the refusal of %s", ev, host)
	}

	env = h.command(schemas.CommandMarketDockerhubResolve, Resolve{ImageID: 9, URL: "docker://" + host + "/team/app?tag=v1"})
	var f Failed
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if want := "registry " + host + ": refusing to connect to " + host + setting; f.ImageID == nil || *f.ImageID != 9 || f.Error != want ||
		f.Code != schemas.CodeAccessDenied {
		t.Errorf("resolve: %+v\nwant the error %q", f, want)
	}
}
