package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// stack starts the real Slipway in-process (embedded NATS on a free port,
// a real MinIO, every service) and returns the global flags that reach it.
// dataDir is a data directory for up.Start under the system temp dir, not t.TempDir(),
// whose 0700 parent would keep the launcher's QEMU uids from their VM directories.
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "slipway-up-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

func stack(t *testing.T) (flags []string, s3 testenv.S3) {
	t.Helper()
	flags, s3, _ = stackWith(t, func(*up.Config) {})
	return flags, s3
}

// stackWith is stack with the test's changes to up's configuration, and
// the stack.
func stackWith(t *testing.T, change func(*up.Config)) (flags []string, s3 testenv.S3, st *up.Stack) {
	t.Helper()
	// This machine must not reach out to Docker Hub: no listing at start.
	t.Setenv("SLIPWAY_MARKET_MONITORING", "off")
	logs := newTestLog(t)
	s3 = testenv.MinIO(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg := up.Config{DataDir: dataDir(t), NATSPort: -1, S3: s3.BlobConfig(), Logger: logger}
	change(&cfg)
	st, err := up.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("up.Start: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Stop(); err != nil {
			t.Errorf("stack stop: %v", err)
		}
	})
	return []string{"--nats-url", st.NATSURL, "--creds", st.Credentials, "--s3-endpoint", s3.Endpoint,
		"--s3-access-key", s3.AccessKey, "--s3-secret-key", s3.SecretKey}, s3, st
}

// testLog sends the services' logs to the test log, shown on failure.
// NATS callbacks may still log after the test ended, when t.Log panics:
// those lines are dropped.
type testLog struct {
	t      *testing.T
	mu     sync.Mutex
	closed bool
}

func newTestLog(t *testing.T) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() { // registered first, so it runs last
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.closed {
		l.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

type result struct {
	code           int
	stdout, stderr string
}

func slipway(t *testing.T, flags []string, args ...string) result {
	t.Helper()
	defer func(start time.Time) { t.Logf("slipway %v: %s", args, time.Since(start)) }(time.Now())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	code := Execute(ctx, append(append([]string{}, flags...), args...), &o, &e)
	return result{code, o.String(), e.String()}
}

// slipwayIn is slipway with stdin.
func slipwayIn(t *testing.T, stdin io.Reader, flags []string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	code := execute(ctx, append(append([]string{}, flags...), args...), streams{in: stdin, out: &o, err: &e})
	return result{code, o.String(), e.String()}
}

func must(t *testing.T, r result, args ...string) result {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("slipway %v: exit %d\nstdout: %s\nstderr: %s", args, r.code, r.stdout, r.stderr)
	}
	return r
}

// mustShow runs slipway with args, which must succeed, and checks that
// its stdout holds each of wants.
func mustShow(t *testing.T, flags, args []string, wants ...string) result {
	t.Helper()
	r := must(t, slipway(t, flags, args...), args...)
	for _, want := range wants {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("slipway %s lacks %q:\n%s", strings.Join(args, " "), want, r.stdout)
		}
	}
	return r
}

// qcow2 makes a qcow2 image of 16 MiB virtual size with 1 MiB of random
// data, with the real qemu-img.
func qcow2(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	raw := filepath.Join(dir, "disk.raw")
	data := make([]byte, 1<<20)
	_, _ = rand.Read(data)
	if err := os.WriteFile(raw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(raw, 16<<20); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "disk.qcow2")
	if b, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, out).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v: %s", err, b)
	}
	return out
}

type listed struct {
	ID         int    `json:"id"`
	Name       string `json:"name"`
	User       string `json:"user"`
	State      string `json:"state"`
	Persistent bool   `json:"persistent"`
	Format     string `json:"format"`
	Size       int64  `json:"size"`
	SHA256     string `json:"sha256"`
	Source     string `json:"source"`
	Error      string `json:"error"`
	Attributes map[string]string
}

func list(t *testing.T, flags []string, extra ...string) []listed {
	t.Helper()
	r := must(t, slipway(t, flags, append([]string{"image", "list", "--json"}, extra...)...), "image list --json")
	var images []listed
	if err := json.Unmarshal([]byte(r.stdout), &images); err != nil {
		t.Fatalf("list --json: %v\n%s", err, r.stdout)
	}
	return images
}

func TestEndToEndCreateFromLocalFile(t *testing.T) {
	flags, s3 := stack(t)
	disk := qcow2(t)

	mustShow(t, flags, []string{"image", "create", "--name", "e2e", "--path", disk, "--wait", "--timeout", "2m"},
		"ID: 0\n", "image 0: READY format qcow2")

	images := list(t, flags)
	if len(images) != 1 {
		t.Fatalf("list: %+v", images)
	}
	img := images[0]
	if img.Name != "e2e" || img.State != "READY" || img.Format != "qcow2" || img.Size != 16<<20 || img.User != "oneadmin" {
		t.Errorf("image = %+v", img)
	}
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	bucket, key, err := blob.ParseURL(img.Source)
	if err != nil {
		t.Fatalf("source %q: %v", img.Source, err)
	}
	sum, _, err := store.SHA256(context.Background(), bucket, key)
	if err != nil {
		t.Fatal(err)
	}
	if img.SHA256 == "" || img.SHA256 != sum {
		t.Errorf("list sha256 %q, S3 object %s/%s has %q", img.SHA256, bucket, key, sum)
	}
	if staged, err := store.List(context.Background(), blob.DefaultUploadBucket, "uploads/"); err != nil || len(staged) != 0 {
		t.Errorf("staged uploads left behind: %v %v", staged, err)
	}

	// Human output.
	r := must(t, slipway(t, flags, "image", "list"))
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "ID USER") ||
		strings.Join(strings.Fields(lines[1]), " ") != "0 oneadmin oneadmin e2e default 16M OS No rdy 0" {
		t.Errorf("list:\n%s", r.stdout)
	}
	mustShow(t, flags, []string{"image", "show", "e2e"},
		"IMAGE 0 INFORMATION", "FORMAT         : qcow2", "SHA256         : "+sum, "STATE          : rdy")
	mustShow(t, flags, []string{"image", "top", "--once"}, "e2e", "READY")

	// The same disk from standard input, named by a template, converted
	// to raw.
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tmpl := filepath.Join(t.TempDir(), "image.tmpl")
	if err := os.WriteFile(tmpl, []byte("NAME = \"from stdin\"\nPATH = -\nFORMAT = raw\nTEAM = storage\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r = must(t, slipwayIn(t, f, flags, "image", "create", tmpl, "--wait", "--timeout", "2m"))
	if !strings.Contains(r.stdout, "ID: 1\n") || !strings.Contains(r.stdout, "image 1: READY format raw size 16M") {
		t.Errorf("create from stdin:\n%s\n%s", r.stdout, r.stderr)
	}
	r = must(t, slipway(t, flags, "image", "show", "1", "--json"))
	var raw listed
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		t.Fatal(err)
	}
	if raw.Name != "from stdin" || raw.Format != "raw" || raw.Size != 16<<20 || raw.Attributes["TEAM"] != "storage" {
		t.Errorf("image from stdin: %+v", raw)
	}
}

func TestEndToEndCommands(t *testing.T) {
	flags, _ := stack(t)
	r := must(t, slipway(t, flags, "image", "create", "--name", "blank", "--type", "DATABLOCK", "--size", "8", "--wait", "--timeout", "2m"))
	if !strings.Contains(r.stdout, "ID: 0") || !strings.Contains(r.stdout, "READY") {
		t.Errorf("create blank:\n%s%s", r.stdout, r.stderr)
	}

	// A refusal by the catalog is printed and fails the command.
	r = slipway(t, flags, "image", "create", "--name", "blank", "--type", "DATABLOCK", "--size", "8")
	if r.code != 1 || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("duplicate name: exit %d, stderr %q", r.code, r.stderr)
	}

	must(t, slipway(t, flags, "image", "rename", "blank", "scratch"))
	must(t, slipway(t, flags, "image", "disable", "0"))
	must(t, slipway(t, flags, "image", "enable", "scratch"))
	must(t, slipway(t, flags, "image", "update", "0", "--attr", "TEAM=storage", "--attr", "tier=gold"))
	r = must(t, slipway(t, flags, "image", "show", "0", "--json"))
	var img listed
	if err := json.Unmarshal([]byte(r.stdout), &img); err != nil {
		t.Fatal(err)
	}
	if img.Name != "scratch" || img.State != "READY" || img.Attributes["TEAM"] != "storage" || img.Attributes["TIER"] != "gold" {
		t.Errorf("after commands: %+v", img)
	}

	// The catalog publishes nothing for a command that changes nothing:
	// the CLI sees that and does not wait for an event.
	start := time.Now()
	r = must(t, slipway(t, flags, "image", "enable", "scratch"))
	if !strings.Contains(r.stdout, "image 0: nothing to enable (READY") || time.Since(start) > 10*time.Second {
		t.Errorf("enable a READY image: %q after %s", r.stdout, time.Since(start))
	}
	r = must(t, slipway(t, flags, "image", "update", "0", "--attr", "TEAM=storage"))
	if !strings.Contains(r.stdout, "nothing to update") {
		t.Errorf("no-op update: %q", r.stdout)
	}
	r = must(t, slipway(t, flags, "image", "persistent", "0"))
	if r.stdout != "image 0: persistent Yes\n" {
		t.Errorf("persistent: %q", r.stdout)
	}
	// A refusal ends the command at once with the catalog's reason.
	must(t, slipway(t, flags, "image", "create", "--name", "other", "--type", "DATABLOCK", "--size", "1", "--wait"))
	r = slipway(t, flags, "image", "rename", "scratch", "other")
	if r.code != 1 || !strings.Contains(r.stderr, "image 0: rename: ") || !strings.Contains(r.stderr, "other") {
		t.Errorf("rename onto a taken name: exit %d, stderr %q", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "image", "delete", "other"))

	must(t, slipway(t, flags, "image", "delete", "scratch"))
	if images := list(t, flags); len(images) != 0 {
		t.Errorf("after delete: %+v", images)
	}
	r = slipway(t, flags, "image", "show", "scratch")
	if r.code != 1 || !strings.Contains(r.stderr, `no image is named "scratch"`) {
		t.Errorf("show deleted: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestEndToEndErrorIsReported(t *testing.T) {
	flags, _ := stack(t)
	dir := t.TempDir()
	backing := filepath.Join(dir, "base.raw")
	if err := os.WriteFile(backing, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	hostile := filepath.Join(dir, "overlay.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", backing, hostile).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v: %s", err, b)
	}
	r := slipway(t, flags, "image", "create", "--name", "hostile", "--path", hostile, "--wait", "--timeout", "2m")
	if r.code != 1 || !strings.Contains(r.stdout, "ID: 0") || !strings.Contains(r.stderr, "image 0: ERROR: ") ||
		!strings.Contains(strings.ToLower(r.stderr), "backing") {
		t.Errorf("hostile import: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	images := list(t, flags)
	if len(images) != 1 || images[0].State != "ERROR" || images[0].Error == "" {
		t.Errorf("after hostile import: %+v", images)
	}
}

// TestEndToEndWaitShowsCatalogProgress: `image create --wait` draws the
// progress of a real import, which it can only have from the catalog's
// image-progress subject (it subscribes to the catalog's events alone),
// named by the saga step and the converter's phases.
func TestEndToEndWaitShowsCatalogProgress(t *testing.T) {
	// Workers report often, so that a small import reports at all.
	t.Setenv("SLIPWAY_PROGRESS_INTERVAL", "5ms")
	flags, _ := stack(t)
	disk := qcow2(t)
	r := must(t, slipway(t, flags, "image", "create", "--name", "progress", "--path", disk, "--format", "raw", "--wait", "--timeout", "2m"))
	if !strings.Contains(r.stdout, "image 0: READY format raw") {
		t.Errorf("create --wait stdout:\n%s", r.stdout)
	}
	if !strings.Contains(r.stderr, "image 0 convert/") {
		t.Errorf("create --wait drew no progress of the convert step:\n%s", r.stderr)
	}
}
