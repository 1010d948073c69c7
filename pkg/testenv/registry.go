package testenv

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/run"
)

// DistributionBinary is Debian's docker-registry, the CNCF distribution
// registry (Debian package docker-registry).
const DistributionBinary = "/usr/bin/docker-registry"

// Registry runs DistributionBinary on a free loopback port with a store
// (deletes enabled) in a temporary directory, until the test ends, and
// returns its host:port. It fails the test when the binary is missing.
func Registry(t testing.TB) string {
	t.Helper()
	if _, err := os.Stat(DistributionBinary); err != nil {
		t.Fatalf("%s is needed (Debian package docker-registry): %v", DistributionBinary, err)
	}
	dir := t.TempDir()
	port, err := FreePort()
	if err != nil {
		t.Fatal(err)
	}
	// The registry binds the port again; a clash fails the readiness wait.
	host := fmt.Sprintf("127.0.0.1:%d", port)
	cfg := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), host)), 0o600); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(dir, "registry.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(DistributionBinary, "serve", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = run.ChildEnv() // nothing of the test's own environment (S3 keys…)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		logf.Close()
	})
	waitRegistry(t, host, exited, logPath)
	return host
}

// waitRegistry polls /v2/ until the registry answers, it exits, or 30 s
// pass.
func waitRegistry(t testing.TB, host string, exited <-chan error, logPath string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := http.Get("http://" + host + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-exited:
			log, _ := os.ReadFile(logPath)
			t.Fatalf("docker-registry exited: %v\n%s", err, log)
		case <-ctx.Done():
			t.Fatalf("docker-registry on %s not ready after 30s", host)
		case <-tick.C:
		}
	}
}
