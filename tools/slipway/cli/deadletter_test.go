package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestDeadLetterCommand runs `slipway dead-letter` against a real
// nats-server the way the compose service does: it sets the streams up,
// listens for max-delivery advisories of both streams in the shared queue
// group, answers its own --healthcheck while connected, and stops cleanly.
func TestDeadLetterCommand(t *testing.T) {
	url, srv := testenv.NATS(t)
	// It runs as the catalog, whose forwarder it is (as in compose).
	creds := testenv.CredentialsFile(t, url, identity.Service(schemas.ServiceCatalog))
	sock := filepath.Join(t.TempDir(), "health.sock")
	health := []string{"--nats-url", url, "dead-letter", "--healthcheck", "--health-addr", "unix:" + sock}
	probe := func() (int, string) {
		var o, e bytes.Buffer
		code := execute(context.Background(), health, streams{in: strings.NewReader(""), out: &o, err: &e})
		return code, e.String()
	}
	if code, _ := probe(); code != 1 {
		t.Fatalf("healthcheck before the forwarder runs: exit %d, want 1", code)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	var stderr bytes.Buffer
	go func() {
		done <- execute(ctx, []string{"--nats-url", url, "--creds", creds, "dead-letter", "--health-addr", "unix:" + sock, "--log-format", "text"},
			streams{in: strings.NewReader(""), out: &bytes.Buffer{}, err: &stderr})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, msg := probe()
		if code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the forwarder never became healthy: %s\nits log:\n%s", msg, stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}

	js := testenv.JetStream(t, url)
	prefix := schemas.StreamPrefix(bus.DefaultPrefix)
	for _, stream := range []string{prefix + "_CMD", prefix + "_EVT", prefix + "_DLQ"} {
		if _, err := js.Stream(ctx, stream); err != nil {
			t.Errorf("stream %s: %v", stream, err)
		}
	}
	for _, stream := range []string{prefix + "_CMD", prefix + "_EVT"} {
		subj := "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + ".some-consumer"
		sz, err := srv.Subsz(&server.SubszOptions{Subscriptions: true, Test: subj})
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, s := range sz.Subs {
			if s.Queue == prefix+"_dlq" {
				found = true
			}
		}
		if !found {
			t.Errorf("no queue subscriber in %s_dlq for %s: %+v", prefix, subj, sz.Subs)
		}
	}

	cancel()
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("dead-letter exited %d after SIGTERM's cancel:\n%s", code, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("dead-letter did not stop")
	}
	if code, _ := probe(); code != 1 {
		t.Fatalf("healthcheck after the forwarder stopped: exit %d, want 1", code)
	}
}
