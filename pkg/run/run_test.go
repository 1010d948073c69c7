package run

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestEnvHelpers(t *testing.T) {
	t.Setenv("T_STR", "x")
	t.Setenv("T_EMPTY", "")
	if Env("T_STR", "d") != "x" || Env("T_EMPTY", "d") != "d" || Env("T_UNSET_123", "d") != "d" {
		t.Fatal("Env")
	}

	t.Setenv("T_DUR", "90s")
	if d, err := EnvDuration("T_DUR", time.Second); err != nil || d != 90*time.Second {
		t.Fatalf("EnvDuration = %v, %v", d, err)
	}
	if d, err := EnvDuration("T_UNSET_123", time.Second); err != nil || d != time.Second {
		t.Fatalf("EnvDuration default = %v, %v", d, err)
	}
	t.Setenv("T_DUR", "10")
	if _, err := EnvDuration("T_DUR", 0); err == nil || !strings.Contains(err.Error(), `T_DUR="10" is not a duration`) {
		t.Fatalf("EnvDuration bad: %v", err)
	}
	t.Setenv("T_DUR", "-1s")
	if _, err := EnvDuration("T_DUR", 0); err == nil {
		t.Fatal("EnvDuration accepted a negative duration")
	}

	t.Setenv("T_INT", " 42 ")
	if n, err := EnvInt("T_INT", 1); err != nil || n != 42 {
		t.Fatalf("EnvInt = %v, %v", n, err)
	}
	t.Setenv("T_INT", "4x")
	if _, err := EnvInt("T_INT", 1); err == nil || !strings.Contains(err.Error(), `T_INT="4x" is not an integer`) {
		t.Fatalf("EnvInt bad: %v", err)
	}

	for v, want := range map[string]bool{"true": true, "YES": true, "1": true, "off": false, "False": false} {
		t.Setenv("T_BOOL", v)
		if b, err := EnvBool("T_BOOL", !want); err != nil || b != want {
			t.Fatalf("EnvBool(%q) = %v, %v", v, b, err)
		}
	}
	t.Setenv("T_BOOL", "maybe")
	if _, err := EnvBool("T_BOOL", false); err == nil || !strings.Contains(err.Error(), `T_BOOL="maybe" is not a boolean`) {
		t.Fatalf("EnvBool bad: %v", err)
	}
}

// EnvReader reads every variable and names each one that is wrong, in
// the order read.
func TestEnvReader(t *testing.T) {
	t.Setenv("T_DUR", "90s")
	t.Setenv("T_INT", "4x")
	t.Setenv("T_BOOL", "maybe")
	var r EnvReader
	d, n, b := r.Duration("T_DUR", time.Second), r.Int("T_INT", 1), r.Bool("T_BOOL", true)
	r.Check(nil)
	r.Check(errors.New("other"))
	if d != 90*time.Second || n != 0 || b {
		t.Errorf("read %v, %v, %v", d, n, b)
	}
	err := r.Err()
	if err == nil || err.Error() != `T_INT="4x" is not an integer`+"\n"+`T_BOOL="maybe" is not a boolean (write true or false)`+"\nother" {
		t.Fatalf("Err = %v", err)
	}
	var ok EnvReader
	if ok.Int("T_UNSET_123", 7) != 7 || ok.Err() != nil {
		t.Fatalf("defaults: %v", ok.Err())
	}
}

func TestNewLogger(t *testing.T) {
	var buf bytes.Buffer
	l, err := NewLogger(&buf, "warn", "")
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hidden")
	l.Warn("shown", "k", 1)
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("not one JSON record: %q", buf.String())
	}
	if rec["msg"] != "shown" || rec["level"] != "WARN" {
		t.Fatalf("record %v", rec)
	}
	buf.Reset()
	l, _ = NewLogger(&buf, "DEBUG", "text")
	l.Debug("dbg")
	if !strings.Contains(buf.String(), "level=DEBUG msg=dbg") {
		t.Fatalf("text log %q", buf.String())
	}
	if _, err := NewLogger(io.Discard, "loud", ""); err == nil || !strings.Contains(err.Error(), "SLIPWAY_LOG_LEVEL") {
		t.Fatalf("bad level: %v", err)
	}
	if _, err := NewLogger(io.Discard, "", "xml"); err == nil || !strings.Contains(err.Error(), "SLIPWAY_LOG_FORMAT") {
		t.Fatalf("bad format: %v", err)
	}
}

func TestMainCode(t *testing.T) {
	t.Setenv(LogFormatEnv, "json")
	var buf bytes.Buffer
	code := mainCode("svc", func(context.Context) error { return errors.New("nats: no servers") }, &buf, t.FailNow)
	if code != 1 {
		t.Fatalf("exit code %d, want 1", code)
	}
	if !strings.Contains(buf.String(), `"error":"nats: no servers"`) || !strings.Contains(buf.String(), `"service":"svc"`) {
		t.Fatalf("error not logged: %q", buf.String())
	}
	if code := mainCode("svc", func(context.Context) error { return nil }, &buf, t.FailNow); code != 0 {
		t.Fatalf("exit code %d, want 0", code)
	}
	t.Setenv(LogLevelEnv, "chatty")
	buf.Reset()
	if code := mainCode("svc", func(context.Context) error { return nil }, &buf, t.FailNow); code != 1 || !strings.Contains(buf.String(), "SLIPWAY_LOG_LEVEL") {
		t.Fatalf("bad log level: code %d, %q", code, buf.String())
	}
}

// TestMainSignals runs Main in a child process (this test binary) and
// sends it real signals.
func TestMainSignals(t *testing.T) {
	if mode := os.Getenv("RUN_TEST_CHILD"); mode != "" {
		Main("child", func(ctx context.Context) error {
			fmt.Println("ready")
			if mode == "stubborn" {
				select {} // ignores ctx: only a second signal ends it
			}
			<-ctx.Done()
			return ctx.Err()
		})
		return
	}
	for _, tc := range []struct {
		mode    string
		signals int
		code    int
	}{
		{"graceful", 1, 0},
		{"stubborn", 2, 130},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestMainSignals$")
			cmd.Env = append(os.Environ(), "RUN_TEST_CHILD="+tc.mode)
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil || line != "ready\n" {
				t.Fatalf("child said %q, %v", line, err)
			}
			for range tc.signals {
				if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
					t.Fatal(err)
				}
				time.Sleep(100 * time.Millisecond)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				_ = cmd.Process.Kill()
				t.Fatal("child did not exit")
			}
			if got := cmd.ProcessState.ExitCode(); got != tc.code {
				t.Fatalf("exit code %d, want %d; stderr: %s", got, tc.code, stderr.String())
			}
			if !strings.Contains(stderr.String(), "shutting down") {
				t.Fatalf("no shutdown log: %s", stderr.String())
			}
		})
	}
}

func TestGroupStopsAllWhenOneFails(t *testing.T) {
	g := NewGroup(context.Background(), WithDrain(5*time.Second))
	stopped := make(chan struct{})
	g.Go("consumer", func(ctx context.Context) error {
		<-ctx.Done()
		close(stopped)
		return ctx.Err()
	})
	g.Go("oneshot", func(context.Context) error { return nil })
	g.Go("api", func(context.Context) error {
		time.Sleep(20 * time.Millisecond)
		return errors.New("listen: address in use")
	})
	err := g.Wait()
	if err == nil || err.Error() != "api: listen: address in use" {
		t.Fatalf("Wait = %v", err)
	}
	select {
	case <-stopped:
	default:
		t.Fatal("consumer was not stopped")
	}
}

func TestGroupParentCancelIsClean(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	g := NewGroup(ctx)
	for _, name := range []string{"a", "b"} {
		g.Go(name, func(ctx context.Context) error {
			<-ctx.Done()
			return fmt.Errorf("draining: %w", ctx.Err())
		})
	}
	time.AfterFunc(20*time.Millisecond, cancel)
	if err := g.Wait(); err != nil {
		t.Fatalf("Wait after cancel = %v", err)
	}
}

func TestGroupDrainTimeout(t *testing.T) {
	var g Group // zero value
	release := make(chan struct{})
	defer close(release)
	g.Go("stuck", func(context.Context) error { <-release; return nil })
	g.Go("quick", func(ctx context.Context) error { <-ctx.Done(); return nil })
	g.drain = 50 * time.Millisecond
	time.AfterFunc(20*time.Millisecond, g.Stop)
	start := time.Now()
	err := g.Wait()
	if err == nil || !strings.Contains(err.Error(), "did not stop within 50ms: stuck") {
		t.Fatalf("Wait = %v", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatal("Wait did not honour the drain timeout")
	}
}

func TestHealthHandler(t *testing.T) {
	var h Health
	get := func() (int, healthReport) {
		rec := httptest.NewRecorder()
		h.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
		var rep healthReport
		if err := json.Unmarshal(rec.Body.Bytes(), &rep); err != nil {
			t.Fatalf("body %q: %v", rec.Body.String(), err)
		}
		return rec.Code, rep
	}
	if code, rep := get(); code != 200 || rep.Status != "ok" {
		t.Fatalf("empty health: %d %+v", code, rep)
	}
	h.Set("nats", nil)
	h.Set("s3", errors.New("minio: connection refused"))
	code, rep := get()
	if code != 503 || rep.Status != "unavailable" || rep.Components["s3"] != "minio: connection refused" || rep.Components["nats"] != "ok" {
		t.Fatalf("failing health: %d %+v", code, rep)
	}
	if err := h.Check(); err == nil || !strings.Contains(err.Error(), "s3: minio") {
		t.Fatalf("Check = %v", err)
	}
	h.Set("s3", nil)
	if code, _ := get(); code != 200 {
		t.Fatalf("recovered health: %d", code)
	}
}

func TestServeHealth(t *testing.T) {
	if err := ServeHealth(context.Background(), "", &Health{}); err != nil {
		t.Fatalf("off: %v", err)
	}
	if err := ServeHealth(context.Background(), "256.0.0.1:1", &Health{}); err == nil {
		t.Fatal("bad address accepted")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &Health{}
	h.Set("bus", errors.New("not connected"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serveHealth(ctx, ln, h) }()
	base := "http://" + ln.Addr().String()
	for path, want := range map[string]int{"/healthz": 503, "/readyz": 503, "/livez": 200} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s: %d, want %d", path, resp.StatusCode, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}

// TestHealthcheckOverUnixSocket serves the endpoint on a Unix socket the
// way docker-compose.yml sets it, over a stale socket a killed process
// left behind, and probes it the way a container healthcheck does.
func TestHealthcheckOverUnixSocket(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "health.sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, like after SIGKILL
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	addr := "unix:" + path

	var stderr bytes.Buffer
	if code := HealthcheckCode("svc", addr, &stderr); code != 1 || !strings.Contains(stderr.String(), "unhealthy") {
		t.Fatalf("no server: code %d, stderr %q", code, stderr.String())
	}

	h := &Health{}
	h.Set("bus", errors.New("not connected"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeHealth(ctx, addr, h) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		stderr.Reset()
		code := HealthcheckCode("svc", addr, &stderr)
		if code == 1 && strings.Contains(stderr.String(), "503") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("unhealthy service: code %d, stderr %q", code, stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "not connected") {
		t.Errorf("the probe does not say why: %q", stderr.String())
	}
	h.Set("bus", nil)
	if code := HealthcheckCode("svc", addr, &stderr); code != 0 {
		t.Fatalf("healthy service: code %d, stderr %q", code, stderr.String())
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}

	// A regular file at the path is not removed: listening fails.
	file := filepath.Join(dir, "not-a-socket")
	if err := os.WriteFile(file, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ServeHealth(context.Background(), "unix:"+file, h); err == nil {
		t.Fatal("listened over a regular file")
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "keep" {
		t.Fatalf("the regular file was touched: %q %v", b, err)
	}
	if code := HealthcheckCode("svc", "", &stderr); code != 1 || !strings.Contains(stderr.String(), HealthAddrEnv) {
		t.Fatalf("empty address: code %d, stderr %q", code, stderr.String())
	}
}

// TestCheckHealthTCP reaches an endpoint given as ":port" on loopback.
func TestCheckHealthTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &Health{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = serveHealth(ctx, ln, h) }()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	for _, addr := range []string{":" + port, "0.0.0.0:" + port, "127.0.0.1:" + port} {
		if err := CheckHealth(ctx, addr); err != nil {
			t.Errorf("%s: %v", addr, err)
		}
	}
	h.Set("s3", errors.New("unreachable"))
	if err := CheckHealth(ctx, ":"+port); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Errorf("unhealthy: %v", err)
	}
}
