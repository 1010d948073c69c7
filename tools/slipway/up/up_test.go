package up

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	p, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

// TestRunStartsAndStopsTheWholeStack runs `slipway up` with its own MinIO
// child, checks that NATS (with the streams) and S3 (with the buckets)
// serve, then interrupts it and checks that both are gone.
func TestRunStartsAndStopsTheWholeStack(t *testing.T) {
	// This machine must not reach out to Docker Hub: no listing at start.
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	// Not t.TempDir(): its 0700 parent would keep the launcher's QEMU uids (root runs
	// QEMU unprivileged) from their VM directories, and the launcher refuses to start.
	dir, err := os.MkdirTemp("", "slipway-up-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := Config{DataDir: dir, NATSPort: -1, MinIOBin: bin, MinIOAddr: freeAddr(t), ConsoleAddr: freeAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := &testenv.Buffer{} // written by Run while the test reads it
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg, out) }()

	deadline := time.After(2 * time.Minute)
	for !strings.Contains(out.String(), "slipway is up") {
		select {
		case err := <-done:
			t.Fatalf("Run returned before it was up: %v\n%s", err, out.String())
		case <-deadline:
			t.Fatalf("not up after 2 minutes:\n%s", out.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	text := out.String()
	keysDir := filepath.Join(dir, S3KeysDir)
	for _, want := range []string{"export SLIPWAY_NATS_URL=nats://127.0.0.1:", "export SLIPWAY_S3_ENDPOINT=" + cfg.MinIOAddr,
		"keys in " + keysDir, "catalog"} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	// No secret is printed, nor compiled in: the root's and each
	// service's are generated, 0600, and differ.
	root, err := blob.ReadKeys(filepath.Join(keysDir, "root.json"))
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{"root": root.SecretKey}
	for _, svc := range []string{"catalog", "converter", "builder", "crypto-luks", "kernel-registry", "launcher"} {
		file := filepath.Join(keysDir, svc+".json")
		k, err := blob.ReadKeys(file)
		if err != nil {
			t.Fatal(err)
		}
		if info, err := os.Stat(file); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v, want 0600", file, info, err)
		}
		secrets[svc] = k.SecretKey
	}
	seen := map[string]string{}
	for who, secret := range secrets {
		if strings.Contains(text, secret) {
			t.Errorf("the output shows %s's secret key", who)
		}
		if other, dup := seen[secret]; dup || len(secret) < 32 {
			t.Errorf("%s's secret key is weak or shared with %s", who, other)
		}
		seen[secret] = who
	}
	if strings.Contains(text, "SECRET_KEY") || strings.Contains(text, "slipway-secret") {
		t.Errorf("the output shows an S3 secret:\n%s", text)
	}
	natsURL := strings.Fields(text[strings.Index(text, "SLIPWAY_NATS_URL=")+len("SLIPWAY_NATS_URL="):])[0]
	creds := filepath.Join(dir, CredentialsFile)
	if !strings.Contains(text, "export SLIPWAY_CREDS="+creds) {
		t.Errorf("output does not point at oneadmin's credentials %s:\n%s", creds, text)
	}
	if strings.Contains(text, "SUAC") || strings.Contains(text, "NKEY SEED") {
		t.Errorf("the output shows a seed:\n%s", text)
	}
	if info, err := os.Stat(creds); err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("oneadmin's credentials: %v, %v", info, err)
	}
	// Anonymous clients are refused; oneadmin's credentials are taken.
	if nc, err := nats.Connect(natsURL, nats.MaxReconnects(0)); err == nil {
		nc.Close()
		t.Error("an anonymous client connected")
	}
	nc, err := nats.Connect(natsURL, nats.UserCredentials(creds), nats.CustomInboxPrefix(schemas.InboxPrefix(acl.AdminUser)))
	if err != nil {
		t.Fatal(err)
	}
	js, _ := nc.JetStream()
	for _, stream := range []string{"SLIPWAY_CMD", "SLIPWAY_EVT", "SLIPWAY_DLQ"} {
		if _, err := js.StreamInfo(stream); err != nil {
			t.Errorf("stream %s: %v", stream, err)
		}
	}
	nc.Close()
	store, err := blob.New(blob.Config{Endpoint: cfg.MinIOAddr, AccessKey: root.AccessKey, SecretKey: root.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range []string{blob.DefaultUploadBucket, "slipway-default"} {
		if ok, err := store.Client().BucketExists(context.Background(), bucket); err != nil || !ok {
			t.Errorf("bucket %s: exists %v, %v", bucket, ok, err)
		}
	}
	for _, sub := range []string{"nats", "minio"} {
		if _, err := os.Stat(filepath.Join(dir, sub)); err != nil {
			t.Errorf("data dir: %v", err)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("Run did not stop within a minute of the interrupt")
	}
	if !strings.HasSuffix(out.String(), "slipway: stopped\n") {
		t.Errorf("output end:\n%s", out.String())
	}
	if c, err := net.DialTimeout("tcp", strings.TrimPrefix(natsURL, "nats://"), time.Second); err == nil {
		c.Close()
		t.Error("NATS still listens after stop")
	}
	if resp, err := http.Get("http://" + cfg.MinIOAddr + "/minio/health/live"); err == nil {
		resp.Body.Close()
		t.Error("MinIO still answers after stop")
	}
}

func TestStartRefusesAShortSecret(t *testing.T) {
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Config{DataDir: t.TempDir(), NATSPort: -1, MinIOBin: bin,
		MinIOAddr: freeAddr(t), ConsoleAddr: freeAddr(t), S3: blob.Config{AccessKey: "slipway", SecretKey: "short"}})
	if err == nil || !strings.Contains(err.Error(), "at least 8 characters") {
		t.Errorf("err = %v", err)
	}
}

func TestStartWithoutMinIOBinaryNamesTheFix(t *testing.T) {
	t.Setenv("SLIPWAY_MINIO_BIN", "")
	t.Setenv("PATH", t.TempDir())
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), NATSPort: -1, MinIOBin: "/nonexistent/minio"})
	if err == nil || !strings.Contains(err.Error(), "make tools") {
		t.Errorf("err = %v", err)
	}
}

// A service variable that is wrong stops `up` with its name; it is never
// ignored.
func TestStartRefusesABadServiceVariable(t *testing.T) {
	t.Setenv("SLIPWAY_MAX_INPUT_BYTES", "lots")
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(context.Background(), Config{DataDir: t.TempDir(), NATSPort: -1, MinIOBin: bin,
		MinIOAddr: freeAddr(t), ConsoleAddr: freeAddr(t)})
	if err == nil || !strings.Contains(err.Error(), `converter: SLIPWAY_MAX_INPUT_BYTES="lots"`) {
		t.Errorf("err = %v", err)
	}
}

func TestStartRefusesAMalformedFetchAllowList(t *testing.T) {
	t.Setenv("SLIPWAY_FETCH_ALLOW", "127.0.0.1/32,registry:port")
	dir := t.TempDir()
	_, err := Start(context.Background(), Config{DataDir: dir, NATSPort: -1, MinIOBin: "/nonexistent/minio"})
	if err == nil || !strings.Contains(err.Error(), `SLIPWAY_FETCH_ALLOW: entry "registry:port": port "port": want 1 to 65535`) {
		t.Errorf("err = %v, want the entry named", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("started something before refusing: %d entries in the data dir", len(entries))
	}
}

// As root, a data directory under a directory others cannot search (a
// checkout under /root) still runs VMs: the launcher's work directory moves
// under /var/lib/slipway, where QEMU's unprivileged uids can reach it.
func TestStartAsRootUnderAClosedDirectory(t *testing.T) {
	if os.Geteuid() != 0 {
		testenv.Skip(t, "only root runs QEMU as unprivileged uids")
	}
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	closed := t.TempDir()
	if err := os.Chmod(closed, 0o700); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(closed, "data")
	st, err := Start(context.Background(), Config{DataDir: dataDir, NATSPort: -1, MinIOBin: bin,
		MinIOAddr: freeAddr(t), ConsoleAddr: freeAddr(t)})
	if err != nil {
		t.Fatalf("Start under a 0700 directory: %v", err)
	}
	defer st.Stop()
	sum := sha256.Sum256([]byte(dataDir))
	lock := filepath.Join("/var/lib/slipway", "up-"+hex.EncodeToString(sum[:6]), "launcher", ".lock")
	if _, err := os.Stat(lock); err != nil {
		t.Errorf("the launcher does not run in /var/lib/slipway: %v", err)
	}
}

// An external S3 server needs the operator's keys: there is no default.
func TestStartOnAnExternalS3NeedsKeys(t *testing.T) {
	_, err := Start(context.Background(), Config{DataDir: t.TempDir(), NATSPort: -1, S3: blob.Config{Endpoint: "127.0.0.1:9"}})
	if err == nil || !strings.Contains(err.Error(), "--s3-access-key and --s3-secret-key") || !strings.Contains(err.Error(), "no default") {
		t.Errorf("err = %v", err)
	}
}
