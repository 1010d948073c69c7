package marketdockerhub

import (
	"context"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// The import tests run the real catalog, as its binary is built from this
// repository (go.work), over the harness's NATS and a real MinIO: the
// market module does not depend on the catalog's, so the service image
// builds without it.
var catalogBin = testenv.Binary{Pkg: "./services/catalog/cmd/catalog"}

// TestMain removes the catalog binary the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	catalogBin.Remove()
	os.Exit(code)
}

// startCatalog runs the catalog process against the harness's NATS and a
// MinIO of its own, and waits until it answers queries. It is stopped
// (SIGTERM, then killed) when the test ends.
func (h *harness) startCatalog() {
	h.t.Helper()
	bin := catalogBin.Path(h.t)
	s3 := testenv.MinIO(h.t)
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"SLIPWAY_NATS_URL="+h.url,
		"SLIPWAY_S3_ENDPOINT="+s3.Endpoint,
		"SLIPWAY_S3_ACCESS_KEY="+s3.AccessKey,
		"SLIPWAY_S3_SECRET_KEY="+s3.SecretKey,
		"SLIPWAY_LOG_LEVEL=warn",
		// It connects as the catalog, and signs the JWTs of the users the
		// tests create with the keys the server trusts.
		"SLIPWAY_NATS_CREDS="+testenv.CredentialsFile(h.t, h.url, identity.Service(schemas.ServiceCatalog)),
		"SLIPWAY_IDENTITY_DIR="+testenv.ServerIdentityDir(h.t, h.url),
	)
	cmd.Stdout, cmd.Stderr = testenv.Writer{T: h.t}, testenv.Writer{T: h.t}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		h.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	h.t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(h.ctx, time.Second)
		var ds []map[string]any
		err := h.cli.Query(ctx, schemas.ServiceCatalog, "datastores", nil, &ds)
		cancel()
		if err == nil {
			return
		}
		select {
		case err := <-done:
			h.t.Fatalf("the catalog exited before it answered: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("the catalog did not answer within 30s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
