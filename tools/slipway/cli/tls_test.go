package cli

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/ovf/ovftest"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/tools/slipway/up"
)

// TestUpWithTLS runs `slipway up --tls` with its own MinIO child: NATS and
// MinIO speak only TLS with certificates of the CA the stack made. A CLI
// and an S3 client that do not trust it fail, the CLI saying what to give;
// with --ca a local disk goes the whole way (upload to MinIO, every
// service, READY). NATS over WebSocket is wss:// with the same users
// (checkWebSocketUser). Then the users' life cycle through the CLI: a user's
// credentials work, `user credentials` gives new ones and the old ones are
// refused, `user delete` has the new ones refused too.
func TestUpWithTLS(t *testing.T) {
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	addr := func() string {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return "127.0.0.1:" + strconv.Itoa(p)
	}
	dir := dataDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := up.Start(ctx, up.Config{DataDir: dir, NATSPort: -1, TLS: true, MinIOBin: bin, MinIOAddr: addr(), ConsoleAddr: addr(), Logger: logger,
		WebSocketAddr: "127.0.0.1:-1"})
	if err != nil {
		t.Fatalf("up.Start --tls: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("stack stop: %v", err)
		}
	})
	if !strings.HasPrefix(st.NATSURL, "tls://") || !st.S3.Secure || st.CA != filepath.Join(dir, up.TLSDir, tlsca.CertFile) {
		t.Fatalf("stack: NATS %s, S3 secure %v, CA %q", st.NATSURL, st.S3.Secure, st.CA)
	}
	env := map[string]string{}
	for _, kv := range st.Env() {
		env[kv[0]] = kv[1]
	}
	if env["SLIPWAY_CA"] != st.CA || env["SLIPWAY_S3_SECURE"] != "true" {
		t.Errorf("environment for other shells: %v", env)
	}
	base := []string{"--nats-url", st.NATSURL, "--s3-endpoint", "https://" + st.S3.Endpoint,
		"--s3-access-key", st.S3.AccessKey, "--s3-secret-key", st.S3.SecretKey}
	admin := append([]string{"--creds", st.Credentials, "--ca", st.CA}, base...)

	// Without the CA: refused, saying what to give.
	r := slipway(t, append([]string{"--creds", st.Credentials, "--ca", ""}, base...), "user", "list")
	if r.code == 0 || !strings.Contains(r.stderr, "does not trust") || !strings.Contains(r.stderr, "--ca") {
		t.Errorf("CLI without the CA: exit %d, stderr %q; want a refusal naming --ca", r.code, r.stderr)
	}
	untrusting, err := blob.New(blob.Config{Endpoint: st.S3.Endpoint, Secure: true, AccessKey: st.S3.AccessKey, SecretKey: st.S3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := untrusting.Client().BucketExists(ctx, blob.DefaultUploadBucket); err == nil || !tlsca.IsUntrusted(err) {
		t.Errorf("S3 client without the CA: %v, want an untrusted certificate", err)
	}

	// With it: a local disk goes the whole way.
	disk := qcow2(t)
	mustShow(t, admin, []string{"image", "create", "--name", "tls", "--path", disk, "--wait", "--timeout", "2m"}, "READY")
	// An OVA too, with every service on its own scoped S3 keys: the
	// converter stages the disks under ova/ of the upload bucket, the
	// catalog imports each and deletes what was staged.
	ova := ovftest.Build(t, ovftest.Package{Name: "tls-ova", Disks: []string{disk, disk}, CPUs: 1, MemoryMiB: 128})
	mustShow(t, admin, []string{"image", "create", "--name", "tls-ova", "--ova", ova.OVA, "--wait", "--timeout", "2m"}, "READY")
	if !testenv.Eventually(time.Minute, 300*time.Millisecond, func() bool {
		return strings.Contains(slipway(t, admin, "image", "show", "tls-ova-disk1", "--json").stdout, `"state": "READY"`)
	}) {
		t.Errorf("the OVA's second disk did not become READY:\n%s", slipway(t, admin, "image", "show", "tls-ova-disk1", "--json").stdout)
	}

	// Users: create, re-issue, delete; each step felt at the server.
	work := t.TempDir()
	first := filepath.Join(work, "alice.creds")
	must(t, slipway(t, admin, "user", "create", "alice", "--out", first), "user create")
	as := func(creds string) []string { return append([]string{"--creds", creds, "--ca", st.CA}, base...) }
	mustShow(t, as(first), []string{"user", "show", "alice"}, "USER alice INFORMATION")
	// NATS over WebSocket speaks TLS too (the same CA), with the same
	// identities and permissions.
	if !strings.HasPrefix(st.WebSocketURL, "wss://") {
		t.Errorf("WebSocketURL %q under --tls, want wss://", st.WebSocketURL)
	}
	checkWebSocketUser(t, st.WebSocketURL, first, nats.RootCAs(st.CA))
	second := filepath.Join(work, "alice-2.creds")
	mustShow(t, admin, []string{"user", "credentials", "alice", "--out", second}, second)
	refused := func(what, creds string) {
		t.Helper()
		r := slipway(t, as(creds), "user", "show", "alice")
		if r.code == 0 || !strings.Contains(r.stderr, "refused") {
			t.Errorf("%s: exit %d, stderr %q; want the server's refusal", what, r.code, r.stderr)
		}
	}
	refused("alice's first credentials after user credentials", first)
	mustShow(t, as(second), []string{"user", "show", "alice"}, "USER alice INFORMATION")
	must(t, slipway(t, admin, "user", "delete", "alice"), "user delete")
	refused("alice's credentials after user delete", second)
}
