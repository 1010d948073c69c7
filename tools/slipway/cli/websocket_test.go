package cli

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/up"
)

// TestWebSocketSameIdentity connects a Go client to `slipway up`'s NATS
// WebSocket listener: without credentials it is refused; with a user's
// credentials it asks the catalog as that user, and is refused a subject
// only oneadmin may use, as over TCP.
func TestWebSocketSameIdentity(t *testing.T) {
	flags, _, st := stackWith(t, func(c *up.Config) { c.WebSocketAddr = "127.0.0.1:-1" })
	if !strings.HasPrefix(st.WebSocketURL, "ws://127.0.0.1:") {
		t.Fatalf("WebSocketURL %q, want ws://127.0.0.1:<port>", st.WebSocketURL)
	}
	creds := filepath.Join(t.TempDir(), "alice.creds")
	must(t, slipway(t, flags, "user", "create", "alice", "--out", creds), "user create")
	mustShow(t, flags, []string{"image", "create", "--name", "admins", "--size", "1", "--type", "DATABLOCK", "--wait"}, "READY")

	if nc, err := nats.Connect(st.WebSocketURL, nats.Timeout(5*time.Second)); err == nil {
		nc.Close()
		t.Fatal("an anonymous WebSocket client was let in")
	}
	checkWebSocketUser(t, st.WebSocketURL, creds)
}

// checkWebSocketUser connects to url as alice (creds, extra options) and
// checks what she may and may not do there.
func checkWebSocketUser(t *testing.T, url, creds string, extra ...nats.Option) {
	t.Helper()
	refused := make(chan error, 4)
	opts := append([]nats.Option{nats.UserCredentials(creds), nats.CustomInboxPrefix(schemas.InboxPrefix("alice")),
		nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { refused <- err })}, extra...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("alice over WebSocket: %v", err)
	}
	defer nc.Close()
	if !strings.HasPrefix(nc.ConnectedUrl(), "ws") {
		t.Fatalf("connected to %s, not over WebSocket", nc.ConnectedUrl())
	}
	// Her own query: the catalog answers, with none of oneadmin's images.
	rep, err := nc.Request("slipway.api.catalog.list.alice", []byte(`{}`), 10*time.Second)
	if err != nil {
		t.Fatalf("alice's list over WebSocket: %v", err)
	}
	var images []schemas.Image
	if err := json.Unmarshal(rep.Data, &images); err != nil {
		t.Fatalf("list reply %q: %v", rep.Data, err)
	}
	if len(images) != 0 {
		t.Errorf("alice sees %d images, want none of oneadmin's", len(images))
	}
	// Speaking as oneadmin: the server refuses the subject.
	if _, err := nc.Request("slipway.api.catalog.list.oneadmin", []byte(`{}`), 3*time.Second); err == nil {
		t.Error("alice asked as oneadmin over WebSocket and was answered")
	}
	select {
	case err := <-refused:
		if !strings.Contains(strings.ToLower(err.Error()), "permissions violation") {
			t.Errorf("refusal %v, want a permissions violation", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("no permissions violation reported for slipway.api.catalog.list.oneadmin")
	}
}
