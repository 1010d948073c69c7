package testenv

import (
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATS starts an in-process nats-server with JetStream for this test, on a
// random port with its store in t.TempDir(), and shuts it down on cleanup.
func NATS(t testing.TB) (url string, srv *server.Server) {
	t.Helper()
	srv, err := NewNATSServer(t.TempDir(), -1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv.ClientURL(), srv
}

// JetStream connects a plain NATS client to url, closed when the test
// ends, and returns its JetStream.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// MinIO starts a MinIO server process for this test, with its data in
// t.TempDir(), and kills it on cleanup. It fails the test (never skips it)
// when the binary is missing.
func MinIO(t testing.TB) S3 {
	t.Helper()
	s3, stop, err := StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s3
}
