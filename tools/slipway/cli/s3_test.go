package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// provisionedStack runs `slipway up` with its own MinIO child, as a user
// does: root keys generated into the data directory, one MinIO user per
// service. It returns the CLI's flags (no S3 key among them) and the
// data directory.
func provisionedStack(t *testing.T) (flags []string, dir string) {
	t.Helper()
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	for _, k := range []string{"SLIPWAY_S3_ACCESS_KEY", "SLIPWAY_S3_SECRET_KEY", "SLIPWAY_S3_KEYS_FILE"} {
		t.Setenv(k, "")
	}
	bin, err := testenv.MinIOBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir = dataDir(t)
	addr := func() string {
		p, err := testenv.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf("127.0.0.1:%d", p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(newTestLog(t), &slog.HandlerOptions{Level: slog.LevelInfo}))
	st, err := up.Start(ctx, up.Config{DataDir: dir, NATSPort: -1, MinIOBin: bin, MinIOAddr: addr(), ConsoleAddr: addr(), Logger: logger})
	if err != nil {
		t.Fatalf("up.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("stack stop: %v", err)
		}
	})
	if st.S3.AccessKey != "" || st.S3.SecretKey != "" {
		t.Errorf("the stack exposes S3 keys: %q", st.S3.AccessKey)
	}
	return []string{"--nats-url", st.NATSURL, "--creds", st.Credentials, "--s3-endpoint", st.S3.Endpoint}, dir
}

// exports parses the `export K='v'` lines of s3-creds.
func exports(t *testing.T, out string) map[string]string {
	t.Helper()
	env := map[string]string{}
	for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		kv, ok := strings.CutPrefix(line, "export ")
		k, v, ok2 := strings.Cut(kv, "=")
		if !ok || !ok2 || len(v) < 2 || v[0] != '\'' || v[len(v)-1] != '\'' {
			t.Fatalf("s3-creds line %q is not export K='v'", line)
		}
		env[k] = v[1 : len(v)-1]
	}
	return env
}

func sha256Of(r io.Reader) string {
	h := sha256.New()
	_, _ = io.Copy(h, r)
	return hex.EncodeToString(h.Sum(nil))
}

// TestUsersHoldNoS3Key runs the CLI against a provisioned stack: uploads,
// imports and deletes work with each service's own keys and the user's
// catalog-issued upload keys; a blob is read through `image url` and
// `image s3-creds` only by who may use the image.
func TestUsersHoldNoS3Key(t *testing.T) {
	flags, dir := provisionedStack(t)
	disk := qcow2(t)
	mustShow(t, flags, []string{"image", "create", "--name", "mine", "--path", disk, "--wait", "--timeout", "2m"}, "ID: 0\n", "READY")
	mustShow(t, flags, []string{"image", "create", "--name", "other", "--path", disk, "--format", "raw", "--wait", "--timeout", "2m"}, "ID: 1\n", "READY")
	var img, other listed
	if err := json.Unmarshal([]byte(must(t, slipway(t, flags, "image", "show", "0", "--json")).stdout), &img); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(must(t, slipway(t, flags, "image", "show", "1", "--json")).stdout), &other); err != nil {
		t.Fatal(err)
	}
	root, err := blob.ReadKeys(filepath.Join(dir, up.S3KeysDir, s3iam.RootKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	endpoint := flags[len(flags)-1]
	rootStore, err := blob.New(blob.Config{Endpoint: endpoint, Region: "us-east-1"}.WithKeys(root))
	if err != nil {
		t.Fatal(err)
	}
	if staged, err := rootStore.List(context.Background(), blob.DefaultUploadBucket, "uploads/"); err != nil || len(staged) != 0 {
		t.Errorf("staged uploads left behind: %v %v", staged, err)
	}

	// oneadmin's URL reads the blob.
	u := strings.TrimSpace(must(t, slipway(t, flags, "image", "url", "0", "--expires", "5m")).stdout)
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	got := sha256Of(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || got != img.SHA256 {
		t.Errorf("GET image url: %d, sha256 %s, want %s", resp.StatusCode, got, img.SHA256)
	}

	// The temporary keys read image 0's blob, not image 1's.
	env := exports(t, must(t, slipway(t, flags, "image", "s3-creds", "mine")).stdout)
	bucket, key, err := blob.ParseURL(env["SLIPWAY_BLOB"])
	if err != nil || env["SLIPWAY_BLOB"] != img.Source {
		t.Fatalf("SLIPWAY_BLOB %q, want %s (%v)", env["SLIPWAY_BLOB"], img.Source, err)
	}
	if !strings.HasPrefix(env["MC_HOST_slipway"], "http://"+env["AWS_ACCESS_KEY_ID"]+":") {
		t.Errorf("MC_HOST_slipway = %q", env["MC_HOST_slipway"])
	}
	tmp, err := blob.New(blob.Config{Endpoint: env["AWS_ENDPOINT_URL"], Region: env["AWS_DEFAULT_REGION"],
		AccessKey: env["AWS_ACCESS_KEY_ID"], SecretKey: env["AWS_SECRET_ACCESS_KEY"], SessionToken: env["AWS_SESSION_TOKEN"]})
	if err != nil {
		t.Fatal(err)
	}
	if sum, _, err := tmp.SHA256(context.Background(), bucket, key); err != nil || sum != img.SHA256 {
		t.Errorf("s3-creds read: %s, %v", sum, err)
	}
	ob, ok, _ := blob.ParseURL(other.Source)
	if _, _, err := tmp.SHA256(context.Background(), ob, ok); !blob.IsDenied(err) {
		t.Errorf("image 0's keys read image 1: %v, want AccessDenied", err)
	}

	// alice: refused until oneadmin opens the image for use.
	aliceCreds := filepath.Join(t.TempDir(), "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", aliceCreds))
	alice := append(append([]string{}, flags...), "--creds", aliceCreds)
	for _, args := range [][]string{{"image", "url", "0"}, {"image", "s3-creds", "0"}} {
		if r := slipway(t, alice, args...); r.code == 0 || !strings.Contains(r.stderr, "may not use image 0") {
			t.Errorf("alice %v: exit %d, stdout %q, stderr %q; want a refusal", args, r.code, r.stdout, r.stderr)
		}
	}
	must(t, slipway(t, flags, "image", "chmod", "0", "604"))
	u = strings.TrimSpace(must(t, slipway(t, alice, "image", "url", "0")).stdout)
	if resp, err = http.Get(u); err != nil {
		t.Fatal(err)
	}
	got = sha256Of(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || got != img.SHA256 {
		t.Errorf("alice GETs image 0 after chmod 604: %d, %s", resp.StatusCode, got)
	}

	// alice uploads under her own prefix; the import consumes it.
	mustShow(t, alice, []string{"image", "create", "--name", "hers", "--path", disk, "--wait", "--timeout", "2m"}, "ID: 2\n", "READY")

	// The catalog deletes with its own keys.
	must(t, slipway(t, flags, "image", "delete", "1"))
	if !testenv.Eventually(30*time.Second, 100*time.Millisecond, func() bool {
		_, err := rootStore.Stat(context.Background(), ob, ok)
		return blob.IsNotFound(err)
	}) {
		t.Errorf("image 1's blob %s is still there after image delete", other.Source)
	}
	if _, err := os.Stat(filepath.Join(dir, up.S3KeysDir, "catalog.json")); err != nil {
		t.Error(err)
	}
}

// TestS3Provision: the operator's step makes one user per service that
// uses S3, whose keys file works and is 0600; without root keys it says
// which are needed.
func TestS3Provision(t *testing.T) {
	for _, k := range []string{"SLIPWAY_S3_ACCESS_KEY", "SLIPWAY_S3_SECRET_KEY"} {
		t.Setenv(k, "")
	}
	s3 := testenv.MinIO(t)
	dir := filepath.Join(t.TempDir(), "keys")
	if r := slipway(t, []string{"--s3-endpoint", s3.Endpoint}, "s3", "provision", "--dir", dir); r.code != 2 || !strings.Contains(r.stderr, "needs MinIO's root keys") {
		t.Errorf("provision without root keys: exit %d, %q", r.code, r.stderr)
	}
	flags := []string{"--s3-endpoint", s3.Endpoint, "--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey}
	r := must(t, slipway(t, flags, "s3", "provision", "--dir", dir))
	for _, svc := range []string{"catalog", "converter", "builder", "crypto-luks", "kernel-registry", "launcher"} {
		file := s3iam.KeysFile(dir, svc)
		if !strings.Contains(r.stdout, svc+"\t"+file+"\n") {
			t.Errorf("output lacks %s's file:\n%s", svc, r.stdout)
		}
		if fi, err := os.Stat(file); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", file, fi, err)
		}
	}
	if strings.Contains(r.stdout, "market-dockerhub") || strings.Contains(r.stdout, s3.SecretKey) {
		t.Errorf("output names market-dockerhub (no S3) or shows the root secret:\n%s", r.stdout)
	}
	// The builder's keys write a build, and cannot create a bucket.
	k, err := blob.ReadKeys(s3iam.KeysFile(dir, "builder"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := blob.New(s3.BlobConfig().WithKeys(k))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), blob.DefaultUploadBucket, "builds/1/x/disk.raw", strings.NewReader("b"), 1); err != nil {
		t.Errorf("the builder's keys: %v", err)
	}
	if err := st.EnsureBucket(context.Background(), "not-provisioned"); !blob.IsDenied(err) || !strings.Contains(err.Error(), "slipway s3 provision") {
		t.Errorf("the builder's keys made a bucket: %v, want AccessDenied naming provisioning", err)
	}
}

// TestS3ProvisionPerService: --per-service writes each service's keys into
// its own directory, owned like that directory (compose's secrets volumes,
// chowned by identity init), keeps them on a second run, and those keys
// work.
func TestS3ProvisionPerService(t *testing.T) {
	s3 := testenv.MinIO(t)
	dir := t.TempDir()
	const uid, gid = 10002, 10002 // the builder's, in deploy/Dockerfile
	if err := os.Mkdir(filepath.Join(dir, "builder"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(filepath.Join(dir, "builder"), uid, gid); err != nil {
		t.Fatalf("chown (the tests run as root): %v", err)
	}
	flags := []string{"--s3-endpoint", s3.Endpoint, "--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey}
	must(t, slipway(t, flags, "s3", "provision", "--per-service", "--dir", dir))
	file := filepath.Join(dir, "builder", "s3.json")
	fi, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Uid != uid || st.Gid != gid || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: owner %d:%d mode %v, want %d:%d 0600", file, st.Uid, st.Gid, fi.Mode().Perm(), uid, gid)
	}
	first, err := blob.ReadKeys(file)
	if err != nil {
		t.Fatal(err)
	}
	must(t, slipway(t, flags, "s3", "provision", "--per-service", "--dir", dir))
	again, err := blob.ReadKeys(file)
	if err != nil || again != first {
		t.Fatalf("second run changed the builder's keys (%v)", err)
	}
	st, err := blob.New(s3.BlobConfig().WithKeys(again))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Put(context.Background(), blob.DefaultUploadBucket, "builds/1/x/disk.raw", strings.NewReader("b"), 1); err != nil {
		t.Errorf("the builder's keys: %v", err)
	}
}
