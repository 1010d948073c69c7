package market_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// scripted is a Driver whose listing the test sets: the core's seam, not
// a fake of anything outside (the drivers of each MAD have their own
// tests against their indexes' formats).
type scripted struct {
	mu    sync.Mutex
	apps  []market.App
	err   error
	calls int
}

func (d *scripted) set(err error, apps ...market.App) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.apps, d.err = apps, err
}

func (d *scripted) Validate(mk *market.Market) error {
	if mk.Endpoint == "" {
		mk.Endpoint = "https://images.example"
	}
	if strings.Contains(mk.Endpoint, "refused") {
		return errors.New("endpoint refused by the driver")
	}
	return nil
}

func (d *scripted) List(context.Context, market.Market) ([]market.App, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	return append([]market.App(nil), d.apps...), d.err
}

func (d *scripted) ImageCreate(mk market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	return schemas.ImageCreate{Path: app.Source}, nil
}

// node is one marketplace service on the test's NATS server.
type node struct {
	svc    string
	driver *scripted
}

type harness struct {
	t   *testing.T
	ctx context.Context
	url string
	cli *bus.Bus
	rec *testenv.Recorder
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, url: url}
	h.cli = testenv.Connect(t, ctx, url, "cli")
	h.rec = testenv.Record(t, testenv.Dial(t, url), func(m *nats.Msg) { checkSchema(t, m) }, "slipway.evt.>")
	testenv.SetupStreams(t, ctx, url)
	return h
}

// start runs a marketplace service with a scripted driver for mad and the
// pre-registered marketplaces given (monitoring off: the tests refresh).
func (h *harness) start(service string, mad schemas.MarketMAD, pre ...market.Market) *node {
	h.t.Helper()
	n := &node{svc: service, driver: &scripted{}}
	b := testenv.Connect(h.t, h.ctx, h.url, service)
	s := market.New(b, market.Config{Service: service, Description: "test", Drivers: market.Drivers{mad: n.driver},
		Preregistered: pre, Settings: market.Settings{RefreshInterval: time.Hour, Logger: testenv.Logger(h.t, slog.LevelWarn)}})
	testenv.Start(h.t, h.ctx, service, s.Run, s.Ready())
	return n
}

func (h *harness) command(svc, verb string, data any) envelope.Envelope {
	h.t.Helper()
	return testenv.Command(h.t, h.ctx, h.cli, svc, verb, data)
}

// outcome waits for svc's event of the command env.
func (h *harness) outcome(svc string, env envelope.Envelope, event string) *nats.Msg {
	h.t.Helper()
	return h.rec.Wait(h.t, event+" of "+env.Type, func(m *nats.Msg) bool {
		return strings.HasPrefix(m.Subject, "slipway.evt."+svc+"."+event+".") &&
			m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
}

func (h *harness) refresh(svc string, id int64) schemas.MarketAppsRefreshed {
	h.t.Helper()
	env := h.command(svc, market.CommandRefresh, schemas.MarketRefresh{MarketID: id})
	var ev schemas.MarketAppsRefreshed
	mustJSON(h.t, h.outcome(svc, env, market.EventAppsRefreshed).Data, &ev)
	return ev
}

func (h *harness) create(svc string, req schemas.MarketCreate) market.Market {
	h.t.Helper()
	env := h.command(svc, market.CommandMarketCreate, req)
	var mk market.Market
	mustJSON(h.t, h.outcome(svc, env, market.EventMarketCreated).Data, &mk)
	return mk
}

func (h *harness) apps(svc string, id int64) map[string]market.App {
	h.t.Helper()
	list := testenv.Query[[]market.App](h.t, h.ctx, h.cli, svc, market.QueryApps, schemas.MarketAppsRequest{MarketID: &id})
	out := map[string]market.App{}
	for _, a := range list {
		out[a.Name] = a
	}
	return out
}

func (h *harness) show(svc string, id int64) market.Market {
	h.t.Helper()
	return testenv.Query[market.Market](h.t, h.ctx, h.cli, svc, market.QueryShow, schemas.MarketShowRequest{ID: &id})
}

func app(name, version string) market.App {
	return market.App{Name: name, Version: version, Source: "https://images.example/" + name + "/rootfs.tar.xz"}
}

var lxc = market.Market{ID: 1, Name: "Linux Containers", Mad: schemas.MarketMADLinuxcontainers}

// TestDropAfterThreeMisses: an app missing from a listing stays (its
// misses counted) until the third listing in a row without it; the others
// keep their IDs throughout.
func TestDropAfterThreeMisses(t *testing.T) {
	h := newHarness(t)
	n := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc)
	n.driver.set(nil, app("alpine", "1"), app("debian", "1"), app("gone", "1"))
	if ev := h.refresh(n.svc, 1); ev.Apps != 3 || ev.Added != 3 || ev.Error != "" {
		t.Fatalf("first listing: %+v", ev)
	}
	before := h.apps(n.svc, 1)
	n.driver.set(nil, app("alpine", "1"), app("debian", "1"))
	for miss := int64(1); miss <= 3; miss++ {
		ev := h.refresh(n.svc, 1)
		got := h.apps(n.svc, 1)
		if miss < market.MaxMisses {
			if g, ok := got["gone"]; !ok || g.Misses != miss || ev.Removed != 0 || ev.Apps != 3 {
				t.Fatalf("after miss %d: gone=%+v (present %v), event %+v", miss, g, ok, ev)
			}
			continue
		}
		if _, ok := got["gone"]; ok || ev.Removed != 1 || ev.Apps != 2 {
			t.Fatalf("after the third miss the app is still there (%v) or the event says %+v", ok, ev)
		}
		for _, name := range []string{"alpine", "debian"} {
			if got[name].ID != before[name].ID || got[name].Regtime != before[name].Regtime {
				t.Errorf("%s changed ID or regtime: %+v then %+v", name, before[name], got[name])
			}
		}
	}
	// Back after two misses: the count starts again.
	n.driver.set(nil, app("alpine", "1"))
	h.refresh(n.svc, 1)
	h.refresh(n.svc, 1)
	n.driver.set(nil, app("alpine", "1"), app("debian", "1"))
	h.refresh(n.svc, 1)
	if d := h.apps(n.svc, 1)["debian"]; d.Misses != 0 || d.ID != before["debian"].ID {
		t.Errorf("debian, listed again after two misses: %+v (ID was %d)", d, before["debian"].ID)
	}
}

// TestEmptyListingKeepsApps: a listing that comes back empty is no
// listing: nothing is missed, however often.
func TestEmptyListingKeepsApps(t *testing.T) {
	h := newHarness(t)
	n := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc)
	n.driver.set(nil, app("alpine", "1"), app("debian", "1"))
	h.refresh(n.svc, 1)
	n.driver.set(nil)
	for range market.MaxMisses + 1 {
		if ev := h.refresh(n.svc, 1); ev.Apps != 2 || ev.Removed != 0 {
			t.Fatalf("empty listing: %+v", ev)
		}
	}
	for name, a := range h.apps(n.svc, 1) {
		if a.Misses != 0 {
			t.Errorf("%s counted %d misses from empty listings", name, a.Misses)
		}
	}
	if len(h.apps(n.svc, 1)) != 2 {
		t.Errorf("apps after empty listings: %v", h.apps(n.svc, 1))
	}
}

// TestFailedListingRecorded: a listing that fails keeps the apps, counts
// no miss, and says why on the marketplace (market show) and in
// apps-refreshed; the next good listing clears it.
func TestFailedListingRecorded(t *testing.T) {
	h := newHarness(t)
	n := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc)
	n.driver.set(nil, app("alpine", "1"))
	h.refresh(n.svc, 1)
	n.driver.set(errors.New("GET https://images.example/streams/v1/index.json: 503 Service Unavailable"))
	for range market.MaxMisses {
		ev := h.refresh(n.svc, 1)
		if !strings.Contains(ev.Error, "503 Service Unavailable") || ev.Apps != 1 {
			t.Fatalf("failed listing's event: %+v", ev)
		}
	}
	if mk := h.show(n.svc, 1); !strings.Contains(mk.Error, "503 Service Unavailable") || mk.Apps != 1 {
		t.Errorf("market show after a failed listing: error %q, %d apps", mk.Error, mk.Apps)
	}
	if a := h.apps(n.svc, 1)["alpine"]; a.Misses != 0 {
		t.Errorf("a failed listing counted a miss: %+v", a)
	}
	n.driver.set(nil, app("alpine", "1"))
	if ev := h.refresh(n.svc, 1); ev.Error != "" {
		t.Errorf("good listing after a failed one: %+v", ev)
	}
	if mk := h.show(n.svc, 1); mk.Error != "" {
		t.Errorf("the error stays after a good listing: %q", mk.Error)
	}
}

// TestUpdateOnVersionChecksumSource: a listed app is rewritten when its
// version, checksums or source change, and only then (OpenNebula's rule);
// its ID and registration time stay.
func TestUpdateOnVersionChecksumSource(t *testing.T) {
	h := newHarness(t)
	n := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc)
	a := app("alpine", "20250101")
	a.Description = "first"
	n.driver.set(nil, a)
	h.refresh(n.svc, 1)
	first := h.apps(n.svc, 1)["alpine"]

	a.Description = "second" // not a reason to rewrite
	n.driver.set(nil, a)
	h.refresh(n.svc, 1)
	if got := h.apps(n.svc, 1)["alpine"]; got.Description != "first" {
		t.Errorf("rewritten without a new version, checksum or source: %+v", got)
	}
	steps := []struct {
		what   string
		change func(*market.App)
		check  func(market.App) bool
	}{
		{"version", func(a *market.App) { a.Version = "20250202" }, func(g market.App) bool { return g.Version == "20250202" }},
		{"checksum", func(a *market.App) { a.Checksums = []string{"sha256:" + strings.Repeat("ab", 32)} },
			func(g market.App) bool { return len(g.Checksums) == 1 }},
		{"source", func(a *market.App) { a.Source = "https://mirror.example/alpine.tar.xz" },
			func(g market.App) bool { return g.Source == "https://mirror.example/alpine.tar.xz" }},
	}
	for _, s := range steps {
		s.change(&a)
		n.driver.set(nil, a)
		h.refresh(n.svc, 1)
		got := h.apps(n.svc, 1)["alpine"]
		if !s.check(got) {
			t.Errorf("a new %s was not stored: %+v", s.what, got)
		}
		if got.ID != first.ID || got.Regtime != first.Regtime {
			t.Errorf("a new %s changed the ID or regtime: %+v, first %+v", s.what, got, first)
		}
		if got.State != schemas.MarketAppStateReady || got.Type != schemas.MarketAppTypeImage {
			t.Errorf("state and type not filled in: %+v", got)
		}
	}
}

// TestIDsUniqueAcrossServices: two marketplace services on one server
// share the ID counters: pre-registered marketplaces have their seed IDs,
// created ones start at 100 and never collide, nor do app IDs, and a name
// is taken across both.
func TestIDsUniqueAcrossServices(t *testing.T) {
	h := newHarness(t)
	a := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc)
	b := h.start(schemas.ServiceMarketDockerhub, schemas.MarketMADDockerhub,
		market.Market{ID: 3, Name: "DockerHub", Mad: schemas.MarketMADDockerhub})
	if mk := h.show(a.svc, 1); mk.Name != "Linux Containers" {
		t.Errorf("market 1: %+v", mk)
	}
	if mk := h.show(b.svc, 3); mk.Name != "DockerHub" || mk.Permissions != "744" || mk.User != "oneadmin" {
		t.Errorf("market 3: %+v", mk)
	}
	seen := map[int64]string{}
	for i := range 6 {
		n, mad := a, schemas.MarketMADLinuxcontainers
		if i%2 == 1 {
			n, mad = b, schemas.MarketMADDockerhub
		}
		mk := h.create(n.svc, schemas.MarketCreate{Name: fmt.Sprintf("m%d", i), Mad: mad, Monitoring: new(false)})
		if mk.ID < market.FirstCreatedID {
			t.Errorf("created marketplace %s got ID %d, below %d", mk.Name, mk.ID, market.FirstCreatedID)
		}
		if other, dup := seen[mk.ID]; dup {
			t.Errorf("ID %d given to %s and %s", mk.ID, other, mk.Name)
		}
		seen[mk.ID] = mk.Name
	}
	if _, ok := seen[market.FirstCreatedID]; !ok {
		t.Errorf("no marketplace got the first ID %d: %v", market.FirstCreatedID, seen)
	}
	// A name is unique across the services.
	env := h.command(b.svc, market.CommandMarketCreate, schemas.MarketCreate{Name: "Linux Containers", Registry: "r.example"})
	var f schemas.Failure
	mustJSON(t, h.outcome(b.svc, env, market.EventFailed).Data, &f)
	if !strings.Contains(f.Error, `already named "Linux Containers"`) {
		t.Errorf("a name market-lxc holds, created on market-dockerhub: %+v", f)
	}
	a.driver.set(nil, app("x", "1"), app("y", "1"))
	b.driver.set(nil, app("x", "1"), app("z", "1"))
	h.refresh(a.svc, 1)
	h.refresh(b.svc, 3)
	appIDs := map[int64]string{}
	for svc, id := range map[string]int64{a.svc: 1, b.svc: 3} {
		for name, ap := range h.apps(svc, id) {
			if other, dup := appIDs[ap.ID]; dup {
				t.Errorf("app ID %d given to %s and %s/%s", ap.ID, other, svc, name)
			}
			appIDs[ap.ID] = svc + "/" + name
		}
	}
	if len(appIDs) != 4 {
		t.Errorf("app IDs: %v", appIDs)
	}
}

// TestNoDriverRecorded: a MAD the service owns without a driver in this
// build lists with a clear error recorded on the marketplace; one it does
// not own is refused at market-create, naming its service.
func TestNoDriverRecorded(t *testing.T) {
	h := newHarness(t)
	n := h.start(schemas.ServiceMarketLxc, schemas.MarketMADLinuxcontainers, lxc,
		market.Market{ID: 2, Name: "TurnKey Linux Containers", Mad: schemas.MarketMADTurnkeylinux})
	ev := h.refresh(n.svc, 2)
	if !strings.Contains(ev.Error, "no driver for MAD turnkeylinux in this build") {
		t.Errorf("listing a MAD without a driver: %+v", ev)
	}
	if mk := h.show(n.svc, 2); !strings.Contains(mk.Error, "no driver for MAD turnkeylinux") {
		t.Errorf("market show: %q", mk.Error)
	}
	env := h.command(n.svc, market.CommandMarketCreate, schemas.MarketCreate{Name: "hub", Mad: schemas.MarketMADDockerhub})
	var f schemas.Failure
	mustJSON(t, h.outcome(n.svc, env, market.EventFailed).Data, &f)
	if !strings.Contains(f.Error, "MAD dockerhub is market-dockerhub's") {
		t.Errorf("market-create of another service's MAD: %+v", f)
	}
	env = h.command(n.svc, market.CommandMarketCreate, schemas.MarketCreate{Name: "bad", Mad: schemas.MarketMADLinuxcontainers,
		Endpoint: "https://refused.example"})
	mustJSON(t, h.outcome(n.svc, env, market.EventFailed).Data, &f)
	if !strings.Contains(f.Error, "endpoint refused by the driver") {
		t.Errorf("market-create the driver refuses: %+v", f)
	}
}

// TestSharedContract: every marketplace service's schemas have the shared
// contract's commands, events and queries, with the same Go types, so the
// core serves both.
func TestSharedContract(t *testing.T) {
	names := map[string][]string{
		schemas.KindCommand: {market.CommandRefresh, market.CommandMarketCreate, market.CommandMarketUpdate,
			market.CommandMarketDelete, market.CommandMarketChmod, market.CommandAppImport},
		schemas.KindEvent: {market.EventMarketCreated, market.EventMarketUpdated, market.EventMarketDeleted,
			market.EventAppsRefreshed, market.EventAppImported, market.EventFailed},
		schemas.KindQuery: {market.QueryList, market.QueryShow, market.QueryApps, market.QueryAppShow},
	}
	for kind, list := range names {
		for _, name := range list {
			var first string
			for _, svc := range market.Services() {
				m, ok := schemas.Lookup(kind, svc, name)
				if !ok {
					t.Errorf("%s has no %s %s", svc, kind, name)
					continue
				}
				if first == "" {
					first = m.Type.String()
				} else if m.Type.String() != first {
					t.Errorf("%s %s: %s in one service, %s in another", kind, name, first, m.Type)
				}
			}
		}
	}
	for _, mad := range schemas.MarketMADValues() {
		if market.Owner(mad) == "" {
			t.Errorf("MAD %s has no owning service", mad)
		}
	}
}

func checkSchema(t *testing.T, m *nats.Msg) {
	parts := strings.Split(m.Subject, ".")
	if len(parts) < 4 {
		return
	}
	if err := schemas.Validate(parts[1], parts[2], parts[3], m.Data); err != nil && !errors.Is(err, schemas.ErrUnknownMessage) {
		t.Errorf("%s does not match its schema: %v\n%s", m.Subject, err, m.Data)
	}
}

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}
