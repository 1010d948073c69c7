package testenv

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
)

// Connect connects a bus to the NATS server at url as service, with a
// logger that discards, and closes it when the test ends.
func Connect(t testing.TB, ctx context.Context, url, service string) *bus.Bus {
	t.Helper()
	b, err := bus.Connect(ctx, bus.Config{URL: url, Service: service, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Store returns a blob store on this server in which buckets exist.
func (s S3) Store(t testing.TB, ctx context.Context, buckets ...string) *blob.Store {
	t.Helper()
	store, err := blob.New(s.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range buckets {
		if err := store.EnsureBucket(ctx, bucket); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// Service is what one service under test runs on: its own NATS server,
// the service's bus with the streams set up, a client bus (service "cli")
// that sends commands and watches events, and a blob store.
type Service struct {
	URL    string // the NATS server's client URL
	Bus    *bus.Bus
	Client *bus.Bus
	Store  *blob.Store
}

// ServiceBus starts a NATS server for this test and connects to it the
// bus of the service name, with the streams set up, and a client. Its
// Store is nil.
func ServiceBus(t testing.TB, ctx context.Context, name string) Service {
	t.Helper()
	url, _ := NATS(t)
	svc := Service{URL: url, Bus: Connect(t, ctx, url, name), Client: Connect(t, ctx, url, "cli")}
	if err := svc.Bus.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	return svc
}

// NewService is ServiceBus with a store on s3 in which buckets exist.
func NewService(t testing.TB, ctx context.Context, s3 S3, name string, buckets ...string) Service {
	t.Helper()
	svc := ServiceBus(t, ctx, name)
	svc.Store = s3.Store(t, ctx, buckets...)
	return svc
}

// Writer writes each line a logger writes to the test's log.
type Writer struct{ T testing.TB }

func (w Writer) Write(p []byte) (int, error) {
	defer func() { _ = recover() }() // a line a service logs after the test ended
	w.T.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// Logger logs at level and above to the test's log.
func Logger(t testing.TB, level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(Writer{t}, &slog.HandlerOptions{Level: level}))
}

// Download copies the object at url (s3://bucket/key) of store into the
// file path and returns path.
func Download(t testing.TB, ctx context.Context, store *blob.Store, url, path string) string {
	t.Helper()
	bucket, key, err := blob.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Client().FGetObject(ctx, bucket, key, path, minio.GetObjectOptions{}); err != nil {
		t.Fatalf("download %s: %v", url, err)
	}
	return path
}

// LeftEmpty fails the test when dir is not empty at its end. Cleanups run
// last-registered first: call it before starting what must clean dir up.
func LeftEmpty(t testing.TB, dir string) {
	t.Cleanup(func() {
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("temp dir %s not cleaned: %d entries left", dir, len(entries))
		}
	})
}
