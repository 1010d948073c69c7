package converter

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker/workertest"
)

// s3 is one MinIO shared by the package's tests.
var s3 testenv.S3

func TestMain(m *testing.M) { os.Exit(testenv.RunWithMinIO(m, "converter", &s3)) }

// harness is a running converter on its own NATS server and a client bus
// that sends commands and watches events.
type harness struct {
	t      *testing.T
	ctx    context.Context
	url    string // the NATS server's
	cli    *bus.Bus
	store  *blob.Store
	events <-chan *nats.Msg
	svc    *Service
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// loopback opens the tests' HTTP servers, which listen on loopback.
var loopback = netguard.MustParse("127.0.0.0/8,::1/128")

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	env := testenv.NewService(t, ctx, s3, Name, testenv.Uploads, testenv.Images)
	events := testenv.Subscribe(t, env.Client.Conn(), "slipway.evt.converter.>")

	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	if cfg.ProgressInterval == 0 {
		cfg.ProgressInterval = 50 * time.Millisecond
	}
	cfg.Logger = quiet()
	testenv.LeftEmpty(t, cfg.TempDir)
	svc := New(env.Bus, env.Store, cfg)
	t.Cleanup(workertest.Start(t, svc.Run, svc.Ready()))
	return &harness{t: t, ctx: ctx, url: env.URL, cli: env.Client, store: env.Store, events: events, svc: svc}
}

// command sends a converter command and returns its ce-id.
func (h *harness) command(verb string, payload any) string {
	h.t.Helper()
	return testenv.Command(h.t, h.ctx, h.cli, Name, verb, payload, bus.WithCorrelation(testenv.Saga)).ID
}

// event waits for the next event named kind ("converted", "failed") about
// id, skipping progress events.
func (h *harness) event(kind, id string, v any) nats.Header {
	h.t.Helper()
	subject := "slipway.evt.converter." + kind + "." + id
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case m := <-h.events:
			if strings.HasPrefix(m.Subject, "slipway.evt.converter.progress.") {
				continue
			}
			if m.Subject != subject {
				h.t.Fatalf("got %s %s, want %s", m.Subject, m.Data, subject)
			}
			if err := json.Unmarshal(m.Data, v); err != nil {
				h.t.Fatal(err)
			}
			return m.Header
		case <-timeout:
			h.t.Fatalf("no %s event", subject)
		}
	}
}

// upload stores a local file in the uploads bucket and returns its URL.
func (h *harness) upload(path, key string) string {
	h.t.Helper()
	return testenv.Upload(h.t, h.ctx, h.store, path, testenv.Uploads, key).URL()
}

// download fetches an object to a local file.
func (h *harness) download(dest string) string {
	h.t.Helper()
	return testenv.Download(h.t, h.ctx, h.store, dest, filepath.Join(h.t.TempDir(), path.Base(dest)))
}

// rawDisk writes a raw disk of size bytes with random data in its first MiB.
func rawDisk(t *testing.T, size int64) string {
	t.Helper()
	return testenv.WriteDisk(t, filepath.Join(t.TempDir(), "disk.raw"), size, io.LimitReader(rand.Reader, 1<<20))
}

func qemuImg(t *testing.T, args ...string) string {
	t.Helper()
	return strings.TrimSpace(testenv.Exec(t, "qemu-img", args...))
}

// qemuInfo returns `qemu-img info --output=json` of path.
func qemuInfo(t *testing.T, path string) map[string]any {
	t.Helper()
	var info map[string]any
	if err := json.Unmarshal([]byte(qemuImg(t, "info", "--output=json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return info
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
