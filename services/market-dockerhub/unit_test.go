package marketdockerhub

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

func TestHubRefusesANextPageOnAnotherHost(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"count":3,"next":"http://elsewhere.example/v2/repositories/library/?page=2","previous":null,"results":[{"name":"nginx"}]}`)
	}))
	defer srv.Close()
	_, err := hub{base: srv.URL, client: srv.Client(), log: slog.New(slog.DiscardHandler)}.list(context.Background())
	if err == nil || !strings.Contains(err.Error(), "another host") {
		t.Errorf("err = %v, want a refusal of the foreign next page", err)
	}
}

func TestHubReportsItsStatus(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"message":"rate limit exceeded"}`)
	}))
	defer srv.Close()
	_, err := hub{base: srv.URL, client: srv.Client(), log: slog.New(slog.DiscardHandler)}.list(context.Background())
	if err == nil || !strings.Contains(err.Error(), "429") || !strings.Contains(err.Error(), "rate limit exceeded") {
		t.Errorf("err = %v", err)
	}
}

func TestParseMirrors(t *testing.T) {
	m, err := parseMirrors("docker.io=127.0.0.1:5001, 127.0.0.1:5002;quay.io=q.local")
	if err != nil || len(m) != 2 || len(m["docker.io"]) != 2 || m["docker.io"][1] != "127.0.0.1:5002" || m["quay.io"][0] != "q.local" {
		t.Errorf("mirrors = %v, %v", m, err)
	}
	if _, err := parseMirrors("docker.io"); err == nil || !strings.Contains(err.Error(), EnvMirrors) {
		t.Errorf("bad entry: %v", err)
	}
}

// TestEveryMessageHasASchema: the commands of the service's contract are
// the ones handleCommand handles, and every event it publishes is in the
// schemas module.
func TestEveryMessageHasASchema(t *testing.T) {
	handled := []string{schemas.CommandMarketDockerhubAppImport, schemas.CommandMarketDockerhubMarketChmod,
		schemas.CommandMarketDockerhubMarketCreate, schemas.CommandMarketDockerhubMarketDelete, schemas.CommandMarketDockerhubMarketUpdate,
		schemas.CommandMarketDockerhubRefresh, schemas.CommandMarketDockerhubResolve}
	if got := bus.Commands(ServiceName); !slices.Equal(got, handled) {
		t.Errorf("the contract's commands are %v, handleCommand handles %v", got, handled)
	}
	for _, e := range []string{schemas.EventMarketDockerhubResolved, schemas.EventMarketDockerhubFailed, schemas.EventMarketDockerhubMarketCreated, schemas.EventMarketDockerhubMarketUpdated, schemas.EventMarketDockerhubMarketDeleted,
		schemas.EventMarketDockerhubAppsRefreshed, schemas.EventMarketDockerhubAppImported} {
		if _, ok := schemas.Lookup(schemas.KindEvent, ServiceName, e); !ok {
			t.Errorf("event %s has no schema", e)
		}
	}
}

func TestConfigKernel(t *testing.T) {
	t.Setenv(EnvKernel, "vmlinuz-6.1")
	cfg, err := ConfigFromEnv()
	if err != nil || cfg.Kernel != "vmlinuz-6.1" {
		t.Errorf("kernel = %q, %v", cfg.Kernel, err)
	}
	t.Setenv(EnvKernel, "")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.Kernel != DefaultKernel {
		t.Errorf("default kernel = %q, %v", cfg.Kernel, err)
	}
	for _, bad := range []string{`my"kernel`, "k]", `a\b`, "tab\there"} {
		t.Setenv(EnvKernel, bad)
		if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvKernel) {
			t.Errorf("kernel %q: %v, want an error naming %s", bad, err, EnvKernel)
		}
	}
	t.Setenv(EnvKernel, "")
	t.Setenv(EnvUser, `o"ne`)
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), EnvUser) {
		t.Errorf("user with a quote: %v", err)
	}
}

func TestConfigFetchAllow(t *testing.T) {
	reg := netip.MustParseAddrPort("127.0.0.1:5000")
	t.Setenv(netguard.EnvAllow, "")
	cfg, err := ConfigFromEnv()
	if err != nil || cfg.Guard.Check("", reg) == nil {
		t.Errorf("unset: %v, loopback open", err)
	}
	t.Setenv(netguard.EnvAllow, "127.0.0.1:5000")
	if cfg, err = ConfigFromEnv(); err != nil || cfg.Guard.Check("", reg) != nil {
		t.Errorf("127.0.0.1:5000 not opened: %v", err)
	}
	t.Setenv(netguard.EnvAllow, "fe80::/10")
	if _, err := ConfigFromEnv(); err == nil || !strings.Contains(err.Error(), `SLIPWAY_FETCH_ALLOW: entry "fe80::/10": IPv6 link-local addresses are never allowed`) {
		t.Errorf("fe80::/10: %v", err)
	}
}

// TestLegacyStoreIsRefused: a bucket written before the shared core (its
// DockerHub at ID 0) stops the service with a message saying what to do,
// rather than a second marketplace 0 beside market-lxc's.
func TestLegacyStoreIsRefused(t *testing.T) {
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	testenv.SetupStreams(t, ctx, url)
	b := testenv.Connect(t, ctx, url, ServiceName)
	kv, err := b.KeyValue(ctx, schemas.BucketName(b.Prefix(), schemas.BucketMarketDockerhub), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, legacyKey, []byte("2026-01-01T00:00:00Z")); err != nil {
		t.Fatal(err)
	}
	err = New(b, Config{Settings: market.Settings{Logger: slog.New(slog.DiscardHandler)}}).Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "written before marketplace IDs were shared") || !strings.Contains(err.Error(), "nats kv del") {
		t.Errorf("Run on a legacy bucket: %v", err)
	}
}
