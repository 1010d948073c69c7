package testenv_test

import (
	"context"
	"crypto/sha256"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/testenv"
)

func TestNATSJetStream(t *testing.T) {
	url, srv := testenv.NATS(t)
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	ack, err := js.Publish(ctx, "t.x", []byte("hello"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	if ack.Sequence != 1 {
		t.Fatalf("sequence = %d, want 1", ack.Sequence)
	}
}

func TestMinIOLive(t *testing.T) {
	s3 := testenv.MinIO(t)
	resp, err := http.Get("http://" + s3.Endpoint + "/minio/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("health: %s", resp.Status)
	}
	cfg := s3.BlobConfig()
	if cfg.Endpoint != s3.Endpoint || cfg.AccessKey != s3.AccessKey || cfg.SecretKey == "" {
		t.Fatalf("BlobConfig = %+v does not match %+v", cfg, s3)
	}
}

func TestStartMinIOStopKills(t *testing.T) {
	s3, stop, err := testenv.StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // idempotent
	c := &http.Client{Timeout: time.Second}
	if resp, err := c.Get("http://" + s3.Endpoint + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Fatal("minio still answers after stop")
	}
}

func TestMinIOBinaryFromEnv(t *testing.T) {
	t.Setenv("SLIPWAY_MINIO_BIN", filepath.Join(t.TempDir(), "nope"))
	if _, err := testenv.MinIOBinary(); err == nil {
		t.Fatal("missing SLIPWAY_MINIO_BIN accepted")
	}
	if _, _, err := testenv.StartMinIO(t.TempDir()); err == nil {
		t.Fatal("StartMinIO with a missing binary succeeded")
	}
}

func TestRepoRoot(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.work")); err != nil {
		t.Fatalf("RepoRoot %q has no go.work: %v", root, err)
	}
	if _, err := os.Stat(filepath.Join(root, "pkg", "go.mod")); err != nil {
		t.Fatalf("RepoRoot %q is not the slipway repo: %v", root, err)
	}
}

func TestFreePort(t *testing.T) {
	p, err := testenv.FreePort()
	if err != nil || p <= 0 || p > 65535 {
		t.Fatalf("FreePort = %d, %v", p, err)
	}
}

// NewService's store has the buckets asked for, its buses reach each
// other, and Download reads back what was put.
func TestNewServiceAndDownload(t *testing.T) {
	ctx := context.Background()
	env := testenv.NewService(t, ctx, testenv.MinIO(t), "builder", "bucket-a", "bucket-b")
	if _, err := env.Store.Put(ctx, "bucket-b", "k/x.raw", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(testenv.Download(t, ctx, env.Store, "s3://bucket-b/k/x.raw", filepath.Join(t.TempDir(), "x")))
	if err != nil || string(got) != "hello" {
		t.Fatalf("downloaded %q, %v", got, err)
	}
	if ok, err := env.Store.Client().BucketExists(ctx, "bucket-a"); err != nil || !ok {
		t.Fatalf("bucket-a: %v %v", ok, err)
	}
	sub, err := env.Bus.Conn().SubscribeSync("ping")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Bus.Conn().Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	if err := env.Client.Conn().Publish("ping", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the service bus did not hear the client: %v", err)
	}
}

func TestScript(t *testing.T) {
	p := testenv.Script(t, "hello", "#!/bin/sh\necho hi $1\n")
	if out := testenv.Exec(t, p, "there"); out != "hi there\n" {
		t.Fatalf("script said %q", out)
	}
}

func TestEventually(t *testing.T) {
	n := 0
	if !testenv.Eventually(time.Second, time.Millisecond, func() bool { n++; return n == 3 }) || n != 3 {
		t.Fatalf("Eventually stopped after %d calls", n)
	}
	start := time.Now()
	if testenv.Eventually(50*time.Millisecond, 10*time.Millisecond, func() bool { return false }) {
		t.Fatal("a condition never true was reported true")
	}
	if d := time.Since(start); d < 50*time.Millisecond || d > 5*time.Second {
		t.Fatalf("gave up after %s, want about 50ms", d)
	}
}

func TestInterleaveAndMedian(t *testing.T) {
	var order []string
	testing.Benchmark(func(b *testing.B) {
		order = order[:0]
		testenv.Interleave(b, func() { order = append(order, "ours") }, func() { order = append(order, "bare") })
	})
	for i := 0; i+3 < len(order); i += 4 {
		if got := strings.Join(order[i:i+4], " "); got != "ours bare bare ours" {
			t.Fatalf("rounds %d and %d ran %s", i/2, i/2+1, got)
		}
	}
	if len(order) < 2 {
		t.Fatalf("ran %v", order)
	}
	if m := testenv.Median([]time.Duration{5, 1, 3}); m != 3 {
		t.Fatalf("median of 5 1 3 = %d", m)
	}
}

func TestFileSHA256(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("abc"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, want := testenv.FileSHA256(t, p), sha256.Sum256([]byte("abc")); got != want {
		t.Fatalf("FileSHA256 = %x, want %x", got, want)
	}
}
