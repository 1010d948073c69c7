package marketlxc

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// The import tests run the real catalog, converter and builder, as their
// binaries are built from this repository (go.work), over the harness's
// NATS and one real MinIO: market-lxc's module depends on none of them.
var (
	catalogBin   = testenv.Binary{Pkg: "./services/catalog/cmd/catalog"}
	converterBin = testenv.Binary{Pkg: "./services/converter/cmd/converter"}
	builderBin   = testenv.Binary{Pkg: "./services/builder/cmd/builder"}
	guestInitBin = testenv.Binary{Pkg: "./services/builder/cmd/slipway-init", Static: true}
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, b := range []*testenv.Binary{&catalogBin, &converterBin, &builderBin, &guestInitBin} {
		b.Remove()
	}
	os.Exit(code)
}

// loopback opens the fakes' addresses, as SLIPWAY_FETCH_ALLOW would.
const loopback = "127.0.0.0/8,::1/128"

// harness is market-lxc on a real nats-server, a CLI-side bus as
// oneadmin, a recorder of the events, and the service's log.
type harness struct {
	t   *testing.T
	ctx context.Context
	url string
	cli *bus.Bus
	rec *testenv.Recorder
	log *testenv.Buffer
	s3  testenv.S3
}

// newHarness starts the service with cfg (its guard and logger set here).
func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, url: url, log: &testenv.Buffer{}}
	h.cli = testenv.Connect(t, ctx, url, "cli")
	h.rec = testenv.Record(t, testenv.Dial(t, url), schemaCheck(t), "slipway.evt.>")
	testenv.SetupStreams(t, ctx, url)
	cfg.Offline = true // nothing listed but what a test asks for
	cfg.Guard = netguard.MustParse(loopback)
	cfg.Logger = slog.New(slog.NewTextHandler(h.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.RefreshInterval = time.Hour
	svc := New(testenv.Connect(t, ctx, url, ServiceName), cfg)
	testenv.Start(t, ctx, ServiceName, svc.Run, svc.Ready())
	return h
}

// withImports runs the catalog, the converter and the builder as
// processes against the harness's NATS and one real MinIO.
func (h *harness) withImports() *harness {
	h.t.Helper()
	h.s3 = testenv.MinIO(h.t)
	testenv.ServiceProcess(h.t, h.url, schemas.ServiceCatalog, catalogBin.Path(h.t), h.s3,
		"SLIPWAY_LOG_LEVEL=warn", "SLIPWAY_IDENTITY_DIR="+testenv.ServerIdentityDir(h.t, h.url))
	worker := []string{"SLIPWAY_LOG_LEVEL=warn", "SLIPWAY_FETCH_ALLOW=" + loopback, "SLIPWAY_TMPDIR=" + h.t.TempDir()}
	testenv.ServiceProcess(h.t, h.url, schemas.ServiceConverter, converterBin.Path(h.t), h.s3, worker...)
	testenv.ServiceProcess(h.t, h.url, schemas.ServiceBuilder, builderBin.Path(h.t), h.s3,
		append(worker, "SLIPWAY_GUEST_INIT="+guestInitBin.Path(h.t))...)
	return h
}

func (h *harness) command(verb string, data any) envelope.Envelope {
	h.t.Helper()
	return testenv.Command(h.t, h.ctx, h.cli, ServiceName, verb, data)
}

// createMarket creates a marketplace with monitoring off and lists it.
func (h *harness) createMarket(req schemas.MarketCreate) (market.Market, schemas.MarketAppsRefreshed) {
	h.t.Helper()
	req.Monitoring = new(false)
	var mk market.Market
	decode(h.t, wait(h.t, h.rec, h.command(market.CommandMarketCreate, req), "market-created"), &mk)
	return mk, h.refresh(mk.ID)
}

// refresh lists marketplace id and returns its apps-refreshed.
func (h *harness) refresh(id int64) schemas.MarketAppsRefreshed {
	h.t.Helper()
	var ev schemas.MarketAppsRefreshed
	decode(h.t, wait(h.t, h.rec, h.command(market.CommandRefresh, schemas.MarketRefresh{MarketID: id}), "apps-refreshed"), &ev)
	return ev
}

func (h *harness) apps(id int64) map[string]market.App {
	h.t.Helper()
	apps := testenv.Query[[]market.App](h.t, h.ctx, h.cli, ServiceName, schemas.QueryMarketLxcApps, schemas.MarketAppsRequest{MarketID: &id})
	out := map[string]market.App{}
	for _, a := range apps {
		out[a.Name] = a
	}
	return out
}

// importApp imports app of marketplace id as name and returns the
// catalog's image once it is READY or ERROR.
func (h *harness) importApp(id int64, app, name string) schemas.Image {
	h.t.Helper()
	env := h.command(market.CommandAppImport, market.AppImport{MarketID: id, App: app, Name: name})
	var ev schemas.MarketAppImported
	decode(h.t, wait(h.t, h.rec, env, "app-imported"), &ev)
	return h.waitImage(ev.ImageID)
}

// waitImage returns the catalog's image id once it is READY or ERROR.
func (h *harness) waitImage(id int64) schemas.Image {
	h.t.Helper()
	var img schemas.Image
	ok := testenv.Eventually(3*time.Minute, 200*time.Millisecond, func() bool {
		img = testenv.Query[schemas.Image](h.t, h.ctx, h.cli, schemas.ServiceCatalog, schemas.QueryCatalogShow, map[string]int64{"id": id})
		return img.State == schemas.ImageStateReady || img.State == schemas.ImageStateError
	})
	if !ok {
		h.t.Fatalf("image %d (%s): still %s", id, img.Name, img.State)
	}
	return img
}

// refused imports app and returns the error of the failed event.
func (h *harness) refused(id int64, app, name string) string {
	h.t.Helper()
	env := h.command(market.CommandAppImport, market.AppImport{MarketID: id, App: app, Name: name})
	var f schemas.Failure
	decode(h.t, wait(h.t, h.rec, env, "failed"), &f)
	return f.Error
}

// schemaCheck fails the test for a message that does not match its
// schema: the apps the drivers list are published in events.
func schemaCheck(t *testing.T) func(*nats.Msg) {
	return func(m *nats.Msg) {
		parts := strings.Split(m.Subject, ".")
		if err := schemas.Validate(parts[1], parts[2], parts[3], m.Data); err != nil {
			t.Errorf("%s does not match its schema: %v", m.Subject, err)
		}
	}
}

// objects are the objects of every bucket of the harness's MinIO.
func (h *harness) objects() []string {
	h.t.Helper()
	store, err := blob.New(h.s3.BlobConfig())
	if err != nil {
		h.t.Fatal(err)
	}
	buckets, err := store.Client().ListBuckets(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, b := range buckets {
		keys, err := store.List(h.ctx, b.Name, "")
		if err != nil {
			h.t.Fatal(err)
		}
		for _, k := range keys {
			out = append(out, blob.URL(b.Name, k))
		}
	}
	return out
}

// logged reports whether a line of the service's log has every part.
func (h *harness) logged(parts ...string) bool {
	for line := range strings.Lines(h.log.String()) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
