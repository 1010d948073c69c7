package integration

import (
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestBadCommandsOnTheBus publishes malformed and schema-invalid commands
// straight onto the bus, as anyone with `nats pub` could. Each must produce a
// `failed` event naming the problem, and a good command sent after them must
// still be served: the consumer is never blocked.
func TestBadCommandsOnTheBus(t *testing.T) {
	s := newStack(t, stackOptions{})
	failed := make(chan *nats.Msg, 16)
	sub, err := s.nc.ChanSubscribe("slipway.evt.catalog.failed.>", failed)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()

	bad := []struct{ name, body, want string }{
		{"malformed JSON", `{"name": "x",`, "json"},
		{"unknown field", `{"name":"x","path":"s3://a/b","colour":"blue"}`, "colour"},
		{"negative size", `{"name":"x","size_mib":-5}`, "size_mib"},
		{"bad type", `{"name":"x","type":"FLOPPY","size_mib":5}`, "type"},
		{"neither path nor size", `{"name":"x"}`, "path"},
	}
	for _, b := range bad {
		if err := s.nc.Publish("slipway.cmd.catalog.image-create.oneadmin", []byte(b.body)); err != nil {
			t.Fatal(err)
		}
		select {
		case m := <-failed:
			var ev struct {
				Command string `json:"command"`
				Error   string `json:"error"`
			}
			if err := json.Unmarshal(m.Data, &ev); err != nil {
				t.Fatalf("%s: failed event is not JSON: %v", b.name, err)
			}
			if !strings.Contains(strings.ToLower(ev.Error), b.want) {
				t.Errorf("%s: failed event %q does not name %q", b.name, ev.Error, b.want)
			}
			if !strings.HasSuffix(ev.Command, "image-create.oneadmin") {
				t.Errorf("%s: failed event names command %q", b.name, ev.Command)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: no failed event", b.name)
		}
	}

	// The queue still moves: a good command after the bad ones is served.
	body := `{"name":"after-bad","type":"DATABLOCK","size_mib":8,"format":"raw"}`
	if err := s.nc.Publish("slipway.cmd.catalog.image-create.oneadmin", []byte(body)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, _, code := s.slipway("image", "show", "after-bad", "--json")
		if code == 0 && strings.Contains(out, `"READY"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("good command after bad ones not served: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestNatsCLI drives Slipway with the plain `nats` CLI exactly as the README
// shows: a command with `nats pub`, a query with `nats req`, `nats micro ls`.
func TestNatsCLI(t *testing.T) {
	natsBin := testenv.NeedRepoFile(t, "bin/nats", "run make tools")
	s := newStack(t, stackOptions{})
	natsCmd := func(args ...string) string {
		t.Helper()
		// As the README shows: oneadmin's credentials, replies on its own
		// inbox.
		cmd := exec.Command(natsBin, append([]string{"--server", s.natsURL, "--creds", s.adminCreds,
			"--inbox-prefix", schemas.InboxPrefix(acl.AdminUser)}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("nats %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}

	natsCmd("pub", "slipway.cmd.catalog.image-create.oneadmin",
		`{"name":"scratch","type":"DATABLOCK","size_mib":64,"format":"raw","fs":"ext4"}`)
	deadline := time.Now().Add(time.Minute)
	for {
		out := natsCmd("req", "slipway.api.catalog.show.oneadmin", `{"name":"scratch"}`)
		if strings.Contains(out, `"READY"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("image from nats pub not READY: %s", out)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if out := natsCmd("req", "slipway.api.catalog.list.oneadmin", `{}`); !strings.Contains(out, `"scratch"`) {
		t.Errorf("list query lacks the image: %s", out)
	}
	out := natsCmd("micro", "ls")
	for _, svc := range []string{"catalog", "converter"} {
		if !strings.Contains(out, svc) {
			t.Errorf("nats micro ls does not list %s:\n%s", svc, out)
		}
	}
}
