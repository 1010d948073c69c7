package testenv

import (
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// NewNATSServer starts an embedded nats-server with JetStream on 127.0.0.1,
// storing streams under storeDir. port -1 picks a free port; 0 means the
// NATS default (4222). Each configure function may change the options
// first (identity.Authority.ConfigureServer turns authentication on). The
// caller owns the server: Shutdown and WaitForShutdown it.
func NewNATSServer(storeDir string, port int, configure ...func(*server.Options) error) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "slipway",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
	}
	for _, c := range configure {
		if err := c(opts); err != nil {
			return nil, fmt.Errorf("nats-server: configure: %w", err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats-server: configure (store %q, port %d): %w", storeDir, port, err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("nats-server: not ready for connections after 10s (store %q, port %d)", storeDir, port)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		return nil, fmt.Errorf("nats-server: JetStream did not start (store %q)", storeDir)
	}
	return srv, nil
}

// Subscribe brings every message on subject that nc receives, from now
// until the test ends, to the channel it returns; up to eventBuffer may
// wait there.
func Subscribe(t testing.TB, nc *nats.Conn, subject string) <-chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, eventBuffer)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return ch
}

// eventBuffer is more than a test's command makes a worker publish.
const eventBuffer = 1000
