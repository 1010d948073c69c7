package cli

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestConsoleCommand runs `slipway console` (compose's console
// container): it serves the page and /config.json naming the NATS
// address given, offers --ca at /ca.crt, answers --healthcheck, refuses a
// NATS address browsers cannot use, and stops with its context.
func TestConsoleCommand(t *testing.T) {
	port, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	ca := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(ca, []byte("-----BEGIN CERTIFICATE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := slipway(t, nil, "console", "--addr", addr, "--nats-ws-url", "nats://127.0.0.1:4222"); r.code == 0 || !strings.Contains(r.stderr, "ws://host:port") {
		t.Errorf("console with a nats:// address: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := slipway(t, nil, "console", "--addr", addr, "--nats-ws-url", "ws://127.0.0.1:4223", "--s3-url", "s3://bucket"); r.code == 0 || !strings.Contains(r.stderr, "http://host:port") {
		t.Errorf("console with an s3:// S3 address: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := slipway(t, nil, "console", "--healthcheck", "--addr", addr); r.code == 0 {
		t.Error("--healthcheck succeeded with no console running")
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &testenv.Buffer{}
	go func() {
		done <- Execute(ctx, []string{"console", "--addr", addr, "--nats-ws-url", "wss://nats.example:4223", "--ca", ca, "--s3-url", "https://s3.example:9000"}, out, io.Discard)
	}()
	if !testenv.Eventually(10*time.Second, 50*time.Millisecond, func() bool {
		return slipway(t, nil, "console", "--healthcheck", "--addr", addr).code == 0
	}) {
		t.Fatalf("console --healthcheck never succeeded; output %q", out.String())
	}
	get := func(path string) string {
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	if conf := get("/config.json"); !strings.Contains(conf, `"nats_ws_url":"wss://nats.example:4223"`) || !strings.Contains(conf, `"has_ca":true`) ||
		!strings.Contains(conf, `"s3_url":"https://s3.example:9000"`) {
		t.Errorf("config.json: %s", conf)
	}
	if got := get("/ca.crt"); !strings.HasPrefix(got, "-----BEGIN CERTIFICATE-----") {
		t.Errorf("/ca.crt: %q", got)
	}
	if page := get("/"); !strings.Contains(page, "Slipway") {
		t.Errorf("/: %q", page)
	}
	if !strings.Contains(out.String(), "console   http://"+addr+"/") {
		t.Errorf("output %q lacks the URL", out.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("console stopped with exit %d", code)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop with its context")
	}
}
