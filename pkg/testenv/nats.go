package testenv

import (
	"fmt"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// NewNATSServer starts an embedded nats-server with JetStream on 127.0.0.1,
// storing streams under storeDir. port -1 picks a free port; 0 means the
// NATS default (4222). The caller owns the server: Shutdown and
// WaitForShutdown it.
func NewNATSServer(storeDir string, port int) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "slipway",
		Host:       "127.0.0.1",
		Port:       port,
		JetStream:  true,
		StoreDir:   storeDir,
		NoSigs:     true,
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
