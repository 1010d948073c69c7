package marketdockerhub

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// harness is the service over a real nats-server, with a fake Docker Hub
// API on loopback, a CLI-side bus and a recorder of what is published.
type harness struct {
	t    *testing.T
	ctx  context.Context
	url  string
	cfg  Config
	svc  *Service
	cli  *bus.Bus
	hub  *fakeHub
	rec  *testenv.Recorder
	stop func()
}

// loopback opens what the tests serve on loopback, as
// SLIPWAY_FETCH_ALLOW=127.0.0.0/8,::1/128 would.
var loopback = netguard.MustParse("127.0.0.0/8,::1/128")

func newHarness(t *testing.T, mutate ...func(*Config)) *harness {
	t.Helper()
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	h := &harness{t: t, ctx: ctx, url: url, hub: newFakeHub(t)}
	h.cfg = Config{
		HubAPI: h.hub.srv.URL,
		Settings: market.Settings{
			Guard:           loopback, // the fake Hub and the registries listen there
			RefreshInterval: time.Hour,
			Logger:          testenv.Logger(t, slog.LevelWarn),
		},
	}
	for _, f := range mutate {
		f(&h.cfg)
	}
	h.cli = h.connect("cli")
	h.rec = record(t, testenv.Dial(t, url), "slipway.evt.>", "slipway.cmd.>") // commands: the witness alone may see them
	testenv.SetupStreams(t, ctx, url)
	h.start()
	return h
}

func (h *harness) connect(service string) *bus.Bus {
	h.t.Helper()
	return testenv.Connect(h.t, h.ctx, h.url, service)
}

func (h *harness) start() {
	h.t.Helper()
	h.svc = New(h.connect(ServiceName), h.cfg)
	h.stop = testenv.Start(h.t, h.ctx, "service", h.svc.Run, h.svc.Ready())
}

func (h *harness) command(verb string, data any) envelope.Envelope {
	h.t.Helper()
	b := h.cli
	if p := testenv.CommandSender(ServiceName, verb); p.Service {
		b = h.connect(p.Name) // resolve is the catalog's to send
	}
	return testenv.Command(h.t, h.ctx, b, ServiceName, verb, data)
}

// outcome waits for the event named event with the correlation of env.
func (h *harness) outcome(env envelope.Envelope, event string) *nats.Msg {
	h.t.Helper()
	return h.rec.Wait(h.t, event+" of "+env.Type, func(m *nats.Msg) bool {
		return strings.HasPrefix(m.Subject, "slipway.evt.market-dockerhub."+event+".") &&
			m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
}

// createMarket creates a registry marketplace and waits for its first
// listing when monitored.
func (h *harness) createMarket(req MarketCreate) Market {
	h.t.Helper()
	env := h.command(schemas.CommandMarketDockerhubMarketCreate, req)
	var mk Market
	mustJSON(h.t, h.outcome(env, schemas.EventMarketDockerhubMarketCreated).Data, &mk)
	if mk.Monitoring {
		var ev AppsRefreshed
		mustJSON(h.t, h.outcome(env, schemas.EventMarketDockerhubAppsRefreshed).Data, &ev)
		if ev.Error != "" {
			h.t.Fatalf("first listing of %s: %s", req.Name, ev.Error)
		}
	}
	return mk
}

func (h *harness) apps(market int64) []App {
	h.t.Helper()
	return testenv.Query[[]App](h.t, h.ctx, h.cli, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{MarketID: &market})
}

func (h *harness) markets() []Market {
	h.t.Helper()
	return testenv.Query[[]Market](h.t, h.ctx, h.cli, ServiceName, schemas.QueryMarketDockerhubList, nil)
}

func appNamed(t *testing.T, apps []App, name string) App {
	t.Helper()
	for _, a := range apps {
		if a.Name == name {
			return a
		}
	}
	t.Fatalf("no app %q in %+v", name, apps)
	return App{}
}

// fakeHub serves Docker Hub's API format for official images on
// loopback, two pages of repositories, and each one's tags.
type fakeHub struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []string
}

type hubRepo struct {
	Name, Description string
	Stars, Pulls      int64
	Tags              map[string]int64 // tag → full_size
}

var hubRepos = []hubRepo{
	{Name: "nginx", Description: "Official build of Nginx.", Stars: 21000, Pulls: 12000000000,
		Tags: map[string]int64{"latest": 72 << 20, "alpine": 20 << 20}},
	{Name: "alpine", Description: "A minimal Docker image based on Alpine Linux", Stars: 11000, Pulls: 9000000000,
		Tags: map[string]int64{"latest": 3 << 20, "3.20": 3 << 20}},
	{Name: "busybox", Description: "Busybox base image.", Stars: 3300, Pulls: 8000000000,
		Tags: map[string]int64{"musl": 1 << 20, "1.36": 2 << 20}},
}

// hubPageLen makes the three repositories two pages.
const hubPageLen = 2

func newFakeHub(t *testing.T) *fakeHub {
	f := &fakeHub{}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeHub) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.reqs = append(f.reqs, r.URL.RequestURI())
	f.mu.Unlock()
	rest, ok := strings.CutPrefix(r.URL.Path, "/v2/repositories/library/")
	switch {
	case !ok:
		http.NotFound(w, r)
	case rest == "":
		f.page(w, r)
	case strings.HasSuffix(rest, "/tags"):
		f.tags(w, strings.TrimSuffix(rest, "/tags"))
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeHub) page(w http.ResponseWriter, r *http.Request) {
	page, err := strconv.Atoi(r.URL.Query().Get("page"))
	if err != nil || page < 1 {
		http.Error(w, `{"message":"bad page"}`, http.StatusBadRequest)
		return
	}
	lo, hi := (page-1)*hubPageLen, min(page*hubPageLen, len(hubRepos))
	type result struct {
		Name        string `json:"name"`
		Namespace   string `json:"namespace"`
		RepoType    string `json:"repository_type"`
		Status      int    `json:"status"`
		Description string `json:"description"`
		IsPrivate   bool   `json:"is_private"`
		StarCount   int64  `json:"star_count"`
		PullCount   int64  `json:"pull_count"`
		LastUpdated string `json:"last_updated"`
	}
	body := map[string]any{"count": len(hubRepos), "next": nil, "previous": nil, "results": []result{}}
	if hi < len(hubRepos) {
		q := url.Values{"page_size": {r.URL.Query().Get("page_size")}, "page": {strconv.Itoa(page + 1)}}
		body["next"] = f.srv.URL + "/v2/repositories/library/?" + q.Encode()
	}
	var results []result
	for _, rp := range hubRepos[min(lo, hi):hi] {
		results = append(results, result{Name: rp.Name, Namespace: "library", RepoType: "image", Status: 1,
			Description: rp.Description, StarCount: rp.Stars, PullCount: rp.Pulls, LastUpdated: "2024-06-01T10:00:00.000000Z"})
	}
	body["results"] = results
	writeJSON(w, body)
}

func (f *fakeHub) tags(w http.ResponseWriter, repo string) {
	for _, rp := range hubRepos {
		if rp.Name != repo {
			continue
		}
		var results []map[string]any
		for tag, size := range rp.Tags {
			results = append(results, map[string]any{"name": tag, "full_size": size, "last_updated": "2024-06-01T10:00:00.000000Z",
				"images": []map[string]any{{"architecture": "amd64", "os": "linux", "size": size}}})
		}
		writeJSON(w, map[string]any{"count": len(results), "next": nil, "previous": nil, "results": results})
		return
	}
	w.WriteHeader(http.StatusNotFound)
	writeJSON(w, map[string]any{"message": "object not found", "errinfo": map[string]any{}})
}

func (f *fakeHub) reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = nil
}

func (f *fakeHub) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.reqs...)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// push writes a random image of layers layers to host/repo:tag.
func push(t *testing.T, host, repo, tag string, layers int64) v1.Image {
	t.Helper()
	img := testenv.RandomImage(t, 4096, layers)
	testenv.Push(t, host+"/"+repo+":"+tag, img)
	return img
}

func layerBytes(t *testing.T, img v1.Image) int64 {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, l := range m.Layers {
		n += l.Size
	}
	return n
}

// record keeps every message on some subjects; what has a schema in the
// schemas module is checked against it (see checkSchema).
func record(t *testing.T, nc *nats.Conn, subjects ...string) *testenv.Recorder {
	t.Helper()
	return testenv.Record(t, nc, func(m *nats.Msg) { checkSchema(t, m) }, subjects...)
}

// checkSchema validates what is published: every event, and the commands
// the service sends (the tests' own commands to it may be invalid on
// purpose). Messages the schemas module does not know yet are let through.
func checkSchema(t *testing.T, m *nats.Msg) {
	parts := strings.Split(m.Subject, ".")
	if len(parts) < 4 || parts[0] != "slipway" || (parts[1] == schemas.KindCommand && parts[2] == ServiceName) {
		return
	}
	if err := schemas.Validate(parts[1], parts[2], parts[3], m.Data); err != nil && !isUnknown(err) {
		t.Errorf("%s does not match its schema: %v\n%s", m.Subject, err, m.Data)
	}
}

func isUnknown(err error) bool { return errors.Is(err, schemas.ErrUnknownMessage) }

func mustJSON(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatalf("decode %s: %v", data, err)
	}
}
