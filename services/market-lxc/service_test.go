package marketlxc

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestPreregistered runs the service on a real nats-server: the seeds'
// marketplaces 0, 1 and 2 exist from the first start, with the configured
// endpoints and monitoring off; listing one whose endpoint the guard
// refuses (loopback, without SLIPWAY_FETCH_ALLOW) records the refusal on
// the marketplace; a marketplace created from a market template's fields
// gets ID 100.
func TestPreregistered(t *testing.T) {
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cli := testenv.Connect(t, ctx, url, "cli")
	rec := testenv.Record(t, testenv.Dial(t, url), schemaCheck(t), "slipway.evt.>")
	testenv.SetupStreams(t, ctx, url)
	svc := New(testenv.Connect(t, ctx, url, ServiceName), Config{Offline: true,
		Endpoints: map[schemas.MarketMAD]string{schemas.MarketMADLinuxcontainers: "http://127.0.0.1:1/"},
		Settings:  market.Settings{Logger: testenv.Logger(t, slog.LevelError)}})
	testenv.Start(t, ctx, ServiceName, svc.Run, svc.Ready())

	list := testenv.Query[[]market.Market](t, ctx, cli, ServiceName, market.QueryList, nil)
	want := map[int64]string{0: "OpenNebula Public", 1: "Linux Containers", 2: "TurnKey Linux Containers"}
	if len(list) != 3 {
		t.Fatalf("marketplaces: %+v", list)
	}
	for _, mk := range list {
		if want[mk.ID] != mk.Name || mk.Monitoring || mk.Permissions != "744" || mk.User != "oneadmin" {
			t.Errorf("marketplace %d: %+v", mk.ID, mk)
		}
		if mk.ID == 1 && mk.Endpoint != "http://127.0.0.1:1" {
			t.Errorf("Linux Containers' endpoint: %q", mk.Endpoint)
		}
		if mk.ID == 2 && mk.Endpoint != DefaultTurnKeyEndpoint {
			t.Errorf("TurnKey's endpoint: %q", mk.Endpoint)
		}
	}

	env := testenv.Command(t, ctx, cli, ServiceName, market.CommandRefresh, schemas.MarketRefresh{MarketID: 1})
	var ev schemas.MarketAppsRefreshed
	decode(t, wait(t, rec, env, "apps-refreshed"), &ev)
	if !strings.Contains(ev.Error, "refusing to connect to 127.0.0.1:1") || !strings.Contains(ev.Error, "SLIPWAY_FETCH_ALLOW") {
		t.Errorf("listing without a driver: %+v", ev)
	}
	mk := testenv.Query[market.Market](t, ctx, cli, ServiceName, market.QueryShow, schemas.MarketShowRequest{Name: "Linux Containers"})
	if mk.Error != ev.Error {
		t.Errorf("market show: error %q", mk.Error)
	}

	env = testenv.Command(t, ctx, cli, ServiceName, market.CommandMarketCreate, schemas.MarketCreate{Name: "lxc",
		Mad: schemas.MarketMADLinuxcontainers, Endpoint: "https://images.example/", ImageSizeMb: 1024,
		Filesystem: schemas.FilesystemExt4, Format: schemas.DiskFormatQcow2, Monitoring: new(false)})
	decode(t, wait(t, rec, env, "market-created"), &mk)
	if mk.ID != market.FirstCreatedID || mk.Endpoint != "https://images.example" || mk.ImageSizeMb != 1024 ||
		mk.Format != schemas.DiskFormatQcow2 || mk.Filesystem != schemas.FilesystemExt4 {
		t.Errorf("created: %+v", mk)
	}
}

func wait(t *testing.T, rec *testenv.Recorder, env envelope.Envelope, event string) *nats.Msg {
	t.Helper()
	return rec.Wait(t, event, func(m *nats.Msg) bool {
		return strings.HasPrefix(m.Subject, "slipway.evt.market-lxc."+event+".") &&
			m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
}

func decode(t *testing.T, m *nats.Msg, v any) {
	t.Helper()
	if err := json.Unmarshal(m.Data, v); err != nil {
		t.Fatal(err)
	}
}

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(market.EnvMonitoring, "off")
	t.Setenv(EnvLXCEndpoint, "http://127.0.0.1:8080/")
	cfg, err := ConfigFromEnv()
	if err != nil || !cfg.Offline {
		t.Fatalf("cfg %+v, %v", cfg, err)
	}
	cfg.defaults()
	if cfg.Endpoints[schemas.MarketMADLinuxcontainers] != "http://127.0.0.1:8080" || cfg.Endpoints[schemas.MarketMADOne] != DefaultOneEndpoint {
		t.Errorf("endpoints: %v", cfg.Endpoints)
	}
	t.Setenv(EnvLXCEndpoint, "ftp://x")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), "http(s)") {
		t.Errorf("ftp endpoint: %v", err)
	}
	t.Setenv(EnvLXCEndpoint, "")
	t.Setenv(EnvKernel, `k"`)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvKernel) {
		t.Errorf("kernel with a quote: %v", err)
	}
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvPublicRoot, "relative/root")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvPublicRoot) {
		t.Errorf("a relative public root: %v", err)
	}
	t.Setenv(EnvPublicRoot, "/srv/market")
	t.Setenv(blob.EnvMarketBuckets, "m-one, m-two")
	if cfg, err := ConfigFromEnv(); err != nil || cfg.PublicRoot != "/srv/market" || !cfg.Locations.IsMarketBucket("m-two") {
		t.Errorf("public root and market buckets: %+v, %v", cfg, err)
	}
}
