package testenv_test

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/testenv"
)

func TestNATSJetStream(t *testing.T) {
	url, srv := testenv.NATS(t)
	if !srv.JetStreamEnabled() {
		t.Fatal("JetStream is not enabled")
	}
	js := testenv.JetStream(t, url)
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
	// The buses reach each other with their own credentials: the client
	// hears the builder's events, and the server refuses the client an
	// event of the builder's.
	sub, err := env.Client.Conn().SubscribeSync("slipway.evt.builder.ping.1")
	if err != nil {
		t.Fatal(err)
	}
	if err := env.Client.Conn().Flush(); err != nil { // the server has the subscription
		t.Fatal(err)
	}
	if err := env.Bus.Conn().Publish("slipway.evt.builder.ping.1", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("the client did not hear the service bus: %v", err)
	}
	if err := env.Client.Conn().Publish("slipway.evt.builder.ping.2", nil); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(time.Second); err == nil {
		t.Fatalf("the client published the builder's event %s", m.Subject)
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

func TestProcessCPU(t *testing.T) {
	start := testenv.ProcessCPU(t)
	sum := sha256.Sum256(nil)
	for deadline := time.Now().Add(100 * time.Millisecond); time.Now().Before(deadline); {
		sum = sha256.Sum256(sum[:])
	}
	if used := testenv.ProcessCPU(t) - start; used < 50*time.Millisecond {
		t.Fatalf("100 ms of hashing counted as %v of CPU", used)
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

// Start returns once the service is ready, and its stop ends the service
// and may be called again.
func TestStartAndStop(t *testing.T) {
	ready := make(chan struct{})
	var ended atomic.Bool
	stop := testenv.Start(t, context.Background(), "svc", func(ctx context.Context) error {
		close(ready)
		<-ctx.Done()
		ended.Store(true)
		return nil
	}, ready)
	stop()
	stop()
	if !ended.Load() {
		t.Fatal("stop returned before the service did")
	}
}

func TestBufferKeepsTheTail(t *testing.T) {
	b := &testenv.Buffer{Max: 4}
	fmt.Fprint(b, "abc")
	fmt.Fprint(b, "def")
	if got := b.String(); got != "cdef" {
		t.Fatalf("buffer holds %q, want the last 4 bytes", got)
	}
	b.Bytes()[0] = 'x'
	if got := string(b.Bytes()); got != "cdef" {
		t.Fatalf("Bytes is not a copy: %q", got)
	}
}

// What Tar writes, ReadTar reads back, in order.
func TestTarRoundTrip(t *testing.T) {
	entries := []testenv.TarEntry{
		{Header: tar.Header{Name: "d/", Typeflag: tar.TypeDir, Mode: 0o755}},
		{Header: tar.Header{Name: "d/f", Typeflag: tar.TypeReg, Mode: 0o644, Size: 2}, Body: []byte("hi")},
	}
	var got []string
	testenv.ReadTar(t, bytes.NewReader(testenv.Tar(t, entries...)), func(h *tar.Header, content io.Reader) {
		b, _ := io.ReadAll(content)
		got = append(got, h.Name+"="+string(b))
	})
	if strings.Join(got, " ") != "d/= d/f=hi" {
		t.Fatalf("read back %q", got)
	}
}

// An image pushed to an OCIRegistry is there under its digest, for linux
// on this machine's architecture.
func TestOCIRegistryPush(t *testing.T) {
	host := testenv.OCIRegistry(t)
	img := testenv.ForPlatform(t, mutateLayers(t, testenv.RandomImage(t, 512, 2)), runtime.GOARCH, v1.Config{Cmd: []string{"/init"}})
	d := testenv.Push(t, host+"/test/app:1", img)
	ref, err := name.ParseReference(host + "/test/app@" + d.String())
	if err != nil {
		t.Fatal(err)
	}
	pulled, err := remote.Image(ref)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := pulled.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != runtime.GOARCH || len(cf.Config.Cmd) != 1 || len(cf.RootFS.DiffIDs) != 3 {
		t.Fatalf("pulled config %+v", cf)
	}
}

// mutateLayers adds a TarLayer to img.
func mutateLayers(t *testing.T, img v1.Image) v1.Image {
	t.Helper()
	img, err := mutate.AppendLayers(img, testenv.TarLayer(t, testenv.TarEntry{Header: tar.Header{Name: "init", Typeflag: tar.TypeReg, Size: 1}, Body: []byte("x")}))
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// WriteDisk makes a file of the size asked with head at its start; Open
// reads it back with that size, Upload stores it.
func TestWriteDiskOpenUpload(t *testing.T) {
	ctx := context.Background()
	p := testenv.WriteDisk(t, filepath.Join(t.TempDir(), "disk.raw"), 1<<20, strings.NewReader("head"))
	f, size := testenv.Open(t, p)
	head := make([]byte, 5)
	if _, err := f.ReadAt(head, 0); err != nil || size != 1<<20 || string(head) != "head\x00" {
		t.Fatalf("disk of %d bytes starting %q, %v", size, head, err)
	}
	store := testenv.MinIO(t).Store(t, ctx, testenv.Uploads)
	if info := testenv.Upload(t, ctx, store, p, testenv.Uploads, "k/disk.raw"); info.Size != 1<<20 || info.URL() != "s3://"+testenv.Uploads+"/k/disk.raw" {
		t.Fatalf("uploaded %+v", info)
	}
}

func TestSubscribe(t *testing.T) {
	url, _ := testenv.NATS(t)
	nc := testenv.Dial(t, url)
	ch := testenv.Subscribe(t, nc, "a.>")
	if err := nc.Publish("a.b", []byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case m := <-ch:
		if m.Subject != "a.b" {
			t.Fatalf("got %s", m.Subject)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("nothing came")
	}
}

func TestProgramAndDest(t *testing.T) {
	if p := testenv.Program(t, "sh", "it is everywhere"); !filepath.IsAbs(p) {
		t.Fatalf("Program(sh) = %q", p)
	}
	if got, want := testenv.Dest(7, "disk.raw"), "s3://slipway-default/images/7/"+testenv.Saga+"/disk.raw"; got != want {
		t.Fatalf("Dest = %s, want %s", got, want)
	}
}
