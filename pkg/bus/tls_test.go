package bus_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/tlsca"
)

// TestConnectTrustsOnlyTheGivenCA: against a server that speaks only TLS
// with a certificate of its own CA, Connect without that CA fails at once
// with ErrUntrusted (no retry loop until the timeout), with another CA too;
// with the CA it connects. The same CAFile still reaches a plain server.
func TestConnectTrustsOnlyTheGivenCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsca.Open(filepath.Join(dir, "ca"), "test")
	if err != nil {
		t.Fatal(err)
	}
	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if _, err := ca.EnsureServer(crt, key, tlsca.Hosts()); err != nil {
		t.Fatal(err)
	}
	other, err := tlsca.Open(filepath.Join(dir, "other"), "other")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.NewNATSServer(t.TempDir(), -1, func(o *server.Options) error {
		cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: crt, KeyFile: key})
		o.TLSConfig, o.TLS, o.TLSTimeout = cfg, true, 5
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()

	ctx := context.Background()
	for name, caFile := range map[string]string{"no CA": "", "another CA": other.CertPath} {
		start := time.Now()
		_, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Service: "test", CAFile: caFile, ConnectTimeout: 30 * time.Second})
		if !errors.Is(err, bus.ErrUntrusted) {
			t.Errorf("%s: %v, want ErrUntrusted", name, err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("%s: failed after %s: retried what no retry fixes", name, d)
		}
	}
	b, err := bus.Connect(ctx, bus.Config{URL: srv.ClientURL(), Service: "test", CAFile: ca.CertPath, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if !b.Conn().TLSRequired() {
		t.Error("the connection is not TLS")
	}
	b.Close()

	plain, _ := testenv.NATS(t)
	b, err = bus.Connect(ctx, bus.Config{URL: plain, Service: "test", Sender: testenv.Sender("test"), CAFile: ca.CertPath, ConnectTimeout: 10 * time.Second},
		testenv.As(t, plain, testenv.Principal("test"))...)
	if err != nil {
		t.Fatalf("a plain server with a CA given: %v", err)
	}
	b.Close()
	if _, err := bus.Connect(ctx, bus.Config{URL: plain, Service: "test", CAFile: filepath.Join(dir, "missing.crt")}); err == nil {
		t.Error("a missing CA file was taken")
	}
}
