package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/tools/slipway/render"
)

func ev(t *testing.T, service, name, id string, v any) event {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return event{Service: service, Name: name, ID: id, Data: data}
}

func TestTopModelFollowsEvents(t *testing.T) {
	m := newTopModel([]render.Image{{ID: 0, Name: "old", State: "READY", Type: "OS", Datastore: "default", Size: 1 << 30}})
	t0 := time.Unix(1000, 0)
	lines := []string{
		m.apply(ev(t, "catalog", "image-created", "1", render.Image{ID: 1, Name: "new", State: "LOCKED", Type: "DATABLOCK", Datastore: "default"}), t0),
		m.apply(ev(t, "catalog", "image-progress", "1", map[string]any{"id": 1, "step": "convert", "phase": "convert", "bytes_done": 0, "bytes_total": 100 << 20}), t0),
		m.apply(ev(t, "catalog", "image-progress", "1", map[string]any{"id": 1, "step": "convert", "phase": "convert", "bytes_done": 50 << 20, "bytes_total": 100 << 20}), t0.Add(500*time.Millisecond)),
		// A worker's own progress is not what the CLI follows.
		m.apply(ev(t, "converter", "progress", "1", map[string]any{"image_id": 1, "phase": "upload", "bytes_done": 0, "bytes_total": 1}), t0.Add(700*time.Millisecond)),
	}
	if !strings.Contains(lines[0], `image 1 "new" created`) || !strings.Contains(lines[1], "image 1 convert/convert 0%") || lines[2] != "" || lines[3] != "" {
		t.Errorf("lines = %q (progress lines at most one a second)", lines)
	}
	var b bytes.Buffer
	if err := m.table(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	if !strings.Contains(out, "convert") || !strings.Contains(out, "50%") || !strings.Contains(out, "104.9 MB/s") {
		t.Errorf("table lacks the live progress:\n%s", out)
	}
	line := m.apply(ev(t, "catalog", "state-changed", "1", map[string]any{"id": 1, "from": "LOCKED", "to": "ERROR", "error": "qcow2 header: backing file is not allowed"}), t0.Add(time.Second))
	if !strings.Contains(line, "LOCKED -> ERROR: qcow2 header") {
		t.Errorf("state line = %q", line)
	}
	m.apply(ev(t, "catalog", "image-deleted", "0", map[string]any{"id": 0, "name": "old"}), t0)
	b.Reset()
	_ = m.table(&b)
	out = b.String()
	if strings.Contains(out, "old") || strings.Contains(out, "50%") || !strings.Contains(out, "backing file") {
		t.Errorf("after delete and ERROR:\n%s", out)
	}
}

func TestProgressViewPlainIsRateLimited(t *testing.T) {
	var b bytes.Buffer
	p := newProgressView(&b, "image 4")
	t0 := time.Unix(0, 0)
	p.update("fetch", 0, 1000, t0)
	p.update("fetch", 100, 1000, t0.Add(200*time.Millisecond))
	p.update("fetch", 600, 1000, t0.Add(time.Second))
	p.update("convert", 10, 0, t0.Add(1100*time.Millisecond))
	p.done()
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("lines = %q, want 3 (second update within a second dropped)", lines)
	}
	if !strings.HasPrefix(lines[0], "image 4 fetch 0%") || !strings.HasPrefix(lines[1], "image 4 fetch 60%") ||
		!strings.Contains(lines[1], "MB/s") || lines[2] != "image 4 convert 0K" {
		t.Errorf("lines = %q", lines)
	}
	if strings.Contains(b.String(), "\033") || strings.Contains(b.String(), "\r") {
		t.Errorf("plain output has terminal control codes: %q", b.String())
	}
}

func TestDescribeOutcome(t *testing.T) {
	cases := []struct {
		verb string
		ev   event
		want string
	}{
		{"image-delete", ev(t, "catalog", "image-deleted", "3", map[string]any{"id": 3, "name": "x"}), "image 3 deleted"},
		{"image-disable", ev(t, "catalog", "state-changed", "3", map[string]any{"id": 3, "from": "READY", "to": "DISABLED"}), "image 3: READY -> DISABLED"},
		{"image-rename", ev(t, "catalog", "image-updated", "3", render.Image{ID: 3, Name: "new"}), `image 3 renamed to "new"`},
		{"image-persistent", ev(t, "catalog", "image-updated", "3", render.Image{ID: 3, Persistent: true}), "image 3: persistent Yes"},
	}
	for _, c := range cases {
		if got := describeOutcome(3, c.verb, c.ev); got != c.want {
			t.Errorf("%s: %q, want %q", c.verb, got, c.want)
		}
	}
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = execute(context.Background(), args, streams{in: strings.NewReader(""), out: &o, err: &e})
	return code, o.String(), e.String()
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"image", "create", "--path", "x.img"}, "a name is required"},
		{[]string{"image", "create", "--name", "x", "--path", "gopher://h/x"}, `scheme "gopher"`},
		{[]string{"image", "show"}, "accepts 1 arg"},
		{[]string{"image", "bogus"}, ""},
		{[]string{"image", "list", "--nope"}, "unknown flag"},
		{[]string{"image", "update", "3"}, "--attr"},
	}
	for _, c := range cases {
		code, _, stderr := runCLI(t, c.args...)
		if code != 2 && !(c.want == "" && code != 0) {
			t.Errorf("%v: exit %d, want 2 (stderr %q)", c.args, code, stderr)
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, stderr, c.want)
		}
	}
}

func TestNoNATSIsAClearError(t *testing.T) {
	code, _, stderr := runCLI(t, "--nats-url", "nats://127.0.0.1:1", "image", "list")
	if code != 1 || !strings.Contains(stderr, "cannot reach NATS at nats://127.0.0.1:1") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "version")
	if code != 0 || !strings.HasPrefix(out, "slipway ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestAttrsReached(t *testing.T) {
	have := map[string]string{"A": "1", "B": "2"}
	cases := []struct {
		want    map[string]string
		replace bool
		reached bool
	}{
		{map[string]string{"A": "1"}, false, true},
		{map[string]string{"A": "2"}, false, false},
		{map[string]string{"C": ""}, false, true},
		{map[string]string{"B": ""}, false, false},
		{map[string]string{"A": "1", "B": "2"}, true, true},
		{map[string]string{"A": "1"}, true, false},
		{map[string]string{"A": "1", "B": "2", "C": ""}, true, true},
		{map[string]string{}, true, false},
	}
	for _, c := range cases {
		if got := attrsReached(have, c.want, c.replace); got != c.reached {
			t.Errorf("attrsReached(%v, %v, replace=%v) = %v", have, c.want, c.replace, got)
		}
	}
}
