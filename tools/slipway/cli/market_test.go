package cli

import (
	"context"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	market "github.com/slipway/slipway/services/market-dockerhub"
)

// marketStack runs the market service over a real nats-server, with Docker
// Hub's API faked on loopback (one official image) and a real registry
// holding team/app:v1 and :latest and busybox:1.36.
func marketStack(t *testing.T) (flags []string, host string) {
	t.Helper()
	url, _ := testenv.NATS(t)
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v2/repositories/library/":
			_, _ = io.WriteString(w, `{"count":1,"next":null,"previous":null,"results":[{"name":"nginx","namespace":"library","description":"Official build of Nginx.","star_count":21000,"pull_count":12000000000,"last_updated":"2024-06-01T10:00:00Z"}]}`)
		case "/v2/repositories/library/nginx/tags":
			_, _ = io.WriteString(w, `{"count":1,"next":null,"previous":null,"results":[{"name":"latest","full_size":75497472}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(hub.Close)
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	t.Cleanup(reg.Close)
	host = strings.TrimPrefix(reg.URL, "http://")
	for _, ref := range []string{"team/app:v1", "team/app:latest", "busybox:1.36"} {
		img, err := random.Image(2048, 1)
		if err != nil {
			t.Fatal(err)
		}
		tag, err := name.NewTag(host + "/" + ref)
		if err != nil {
			t.Fatal(err)
		}
		if err := remote.Write(tag, img); err != nil {
			t.Fatal(err)
		}
	}

	ctx, cancel := context.WithCancel(context.Background())
	b, err := bus.Connect(ctx, bus.Config{URL: url, Service: market.ServiceName, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	svc := market.New(b, market.Config{HubAPI: hub.URL, RefreshInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(newTestLog(t), nil))})
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("market Run: %v", err)
		}
		b.Close()
	})
	select {
	case <-svc.Ready():
	case err := <-done:
		t.Fatalf("market service stopped: %v", err)
	}
	return []string{"--nats-url", url}, host
}

func TestMarketCommands(t *testing.T) {
	flags, host := marketStack(t)
	r := must(t, slipway(t, flags, "market", "refresh", "DockerHub"), "market refresh")
	if r.stdout != "marketplace 0 \"DockerHub\": 1 apps (0 new, 0 gone)\n" && r.stdout != "marketplace 0 \"DockerHub\": 1 apps (1 new, 0 gone)\n" {
		t.Errorf("refresh: %q", r.stdout)
	}
	r = must(t, slipway(t, flags, "market", "create", "--name", "local", "--registry", host), "market create")
	if r.stdout != "marketplace 1 \"local\": 2 apps (2 new, 0 gone)\n" {
		t.Errorf("create: %q", r.stdout)
	}

	r = must(t, slipway(t, flags, "market", "list"), "market list")
	want := "" +
		"ID NAME      SIZE AVAIL APPS MAD       ZONE\n" +
		" 0 DockerHub   0M     -    1 dockerhub    0\n" +
		" 1 local       0M     -    2 registry     0\n"
	if r.stdout != want {
		t.Errorf("market list:\n%s\nwant:\n%s", r.stdout, want)
	}

	r = must(t, slipway(t, flags, "market", "app", "list", "local"), "market app list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME VERSION SIZE STAT TYPE REGTIME MARKET ZONE" {
		t.Fatalf("app list:\n%s", r.stdout)
	}
	var row []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[1] == "team/app" {
			row = f
		}
	}
	if len(row) != 9 || row[2] != "latest" || row[4] != "rdy" || row[5] != "img" || row[7] != "local" || row[8] != "0" {
		t.Errorf("team/app row = %q in\n%s", row, r.stdout)
	}

	r = must(t, slipway(t, flags, "market", "app", "show", "team/app"), "market app show")
	for _, s := range []string{"TAGS           : latest, v1", "SOURCE         : docker://" + host + "/team/app",
		"VM TEMPLATE\n", `NAME = "team/app"`, `IMAGE = "team/app"`, `KERNEL_CMD = "console=ttyS0 init=/.slipway/init"`} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("app show lacks %q:\n%s", s, r.stdout)
		}
	}

	r = must(t, slipway(t, flags, "market", "app", "import", "team/app", "--name", "web", "--tag", "v1", "--wait=false"), "market app import")
	if !strings.Contains(r.stdout, "docker://"+host+"/team/app:v1?filesystem=ext4&format=qcow2") {
		t.Errorf("import: %s", r.stdout)
	}
	r = must(t, slipway(t, flags, "market", "app", "show", "team/app", "--market", "local"), "market app show")
	if !strings.Contains(r.stdout, `NAME = "web"`) {
		t.Errorf("app show after import lacks the imported template:\n%s", r.stdout)
	}

	r = must(t, slipway(t, flags, "market", "update", "local", "--monitoring=false"), "market update")
	if r.stdout != "marketplace 1 \"local\" updated: monitoring No\n" {
		t.Errorf("update: %q", r.stdout)
	}
	r = slipway(t, flags, "market", "create", "--name", "local", "--registry", host)
	if r.code != 1 || !strings.Contains(r.stderr, `already named "local"`) {
		t.Errorf("duplicate create: exit %d, %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "market", "delete", "local"), "market delete")
	r = slipway(t, flags, "market", "app", "show", "team/app")
	if r.code != 1 || !strings.Contains(r.stderr, `no app is named "team/app"`) {
		t.Errorf("show after delete: exit %d, %s", r.code, r.stderr)
	}
}
