package testenv

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
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

// NATSServerBinary runs ./bin/nats-server with the configuration file conf
// on 127.0.0.1 and a free port (monitoring off) until the test ends, and
// returns host:port once it listens. It skips the test when the binary is
// missing. conf should not say where to listen.
func NATSServerBinary(t testing.TB, conf string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(root, "bin", "nats-server")
	if _, err := os.Stat(bin); err != nil {
		Skip(t, "no nats-server at %s (make tools installs it)", bin)
	}
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	cmd := exec.Command(bin, "-c", conf, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-m", "0")
	cmd.Env = []string{}
	var log Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
	listening := false
	Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		select {
		case <-exited:
			return true
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			listening = true
		}
		return listening
	})
	if !listening {
		t.Fatalf("nats-server -c %s did not listen on %s:\n%s", conf, addr, log.String())
	}
	return addr
}
