package console

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/render"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestHandlerServesThePageAndItsConfiguration checks what the console's
// server hands out: the page, the bundle, /config.json with NATS's
// WebSocket address and the CLI's short names, a CSP that lets the page
// reach only itself and that address, nothing but GET and HEAD, and
// /ca.crt only when a CA is given.
func TestHandlerServesThePageAndItsConfiguration(t *testing.T) {
	h, err := Handler(Config{NATSWebSocketURL: "ws://127.0.0.1:4223", S3URL: "http://127.0.0.1:9000/", Prefix: "slipway"})
	if err != nil {
		t.Fatal(err)
	}
	r := get(t, h, http.MethodGet, "/")
	if page := body(t, r); r.StatusCode != 200 || !strings.Contains(page, `<script type="module" src="app.js">`) {
		t.Errorf("GET /: %d %q", r.StatusCode, page)
	}
	csp := r.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'self'", "connect-src 'self' ws://127.0.0.1:4223 http://127.0.0.1:9000;", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if r := get(t, h, http.MethodGet, "/app.js"); r.StatusCode != 200 || len(body(t, r)) < 1000 {
		t.Errorf("GET /app.js: %d, or not the bundle", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/style.css"); r.StatusCode != 200 {
		t.Errorf("GET /style.css: %d", r.StatusCode)
	}
	r = get(t, h, http.MethodGet, "/config.json")
	var conf struct {
		URL    string            `json:"nats_ws_url"`
		Prefix string            `json:"prefix"`
		Names  render.ShortNames `json:"names"`
		HasCA  bool              `json:"has_ca"`
		S3URL  string            `json:"s3_url"`
	}
	if err := json.Unmarshal([]byte(body(t, r)), &conf); err != nil {
		t.Fatal(err)
	}
	if conf.URL != "ws://127.0.0.1:4223" || conf.Prefix != "slipway" || conf.Names.States["READY"] != "rdy" || conf.Names.Types["DATABLOCK"] != "DB" || conf.HasCA ||
		conf.S3URL != "http://127.0.0.1:9000" {
		t.Errorf("config.json: %+v", conf)
	}
	if r := get(t, h, http.MethodPost, "/config.json"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d, want 405", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/ca.crt"); r.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ca.crt without a CA: %d, want 404", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/../console.go"); r.StatusCode == 200 {
		t.Error("served a file outside static/ and dist/")
	}

	withCA, err := Handler(Config{NATSWebSocketURL: "wss://nats.example:4223", CACert: []byte("PEM")})
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, withCA, http.MethodGet, "/ca.crt"); r.StatusCode != 200 || body(t, r) != "PEM" {
		t.Errorf("GET /ca.crt with a CA: %d", r.StatusCode)
	}
	if !strings.Contains(body(t, get(t, withCA, http.MethodGet, "/config.json")), `"has_ca":true`) {
		t.Error("config.json does not say the CA is there")
	}
}

// TestHandlerRefusesAnAddressBrowsersCannotUse: NATS's address for
// browsers must be a ws:// or wss:// URL, which also goes into the CSP.
func TestHandlerRefusesAnAddressBrowsersCannotUse(t *testing.T) {
	for _, u := range []string{"", "nats://127.0.0.1:4222", "127.0.0.1:4223", "ws://", "ws://a b/", "ws://h:1; script-src *", "ws://h/;script-src *", "wss://u:p@h:1", "ws://h:1/x", "ws://h:1?a=b"} {
		if _, err := Handler(Config{NATSWebSocketURL: u}); err == nil {
			t.Errorf("Handler accepted NATS address %q", u)
		}
	}
	for _, u := range []string{"ws://127.0.0.1:9000", "127.0.0.1:9000", "http://", "http://h:1; script-src *", "https://u:p@h:1", "http://h:1/bucket", "http://h:1?a=b", "http://h:1#x", "javascript:alert(1)"} {
		if _, err := Handler(Config{NATSWebSocketURL: "ws://127.0.0.1:4223", S3URL: u}); err == nil || !strings.Contains(err.Error(), "S3 address") {
			t.Errorf("Handler accepted S3 address %q (%v)", u, err)
		}
	}
}

// TestPageRendersAsTheCLI runs the page's formatters (web/src/store.js)
// in Node against the CLI's (package render): sizes and permission bits
// read the same in both.
func TestPageRendersAsTheCLI(t *testing.T) {
	sizes := []int64{0, -1, 1, 512, 1023, 1024, 1025, 1536, 10 << 20, 1 << 30, 1<<30 + 1, 3 << 29, 2 << 30, 5 << 40, 7 << 50, 123456789}
	var perms []string
	for i := range 0o1000 {
		perms = append(perms, fmt.Sprintf("%03o", i))
	}
	perms = append(perms, "", "8", "1234", "abc")
	out := runNode(t, `import { humanSize, permissionRows } from "./web/src/store.js";
const input = JSON.parse(process.argv[1]);
console.log(JSON.stringify({ sizes: input.sizes.map(humanSize), perms: input.perms.map(permissionRows) }));`,
		map[string]any{"sizes": sizes, "perms": perms})
	var got struct {
		Sizes []string      `json:"sizes"`
		Perms [][][2]string `json:"perms"`
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node's output %q: %v", out, err)
	}
	for i, n := range sizes {
		if want := render.HumanSize(n); got.Sizes[i] != want {
			t.Errorf("size %d: page %q, CLI %q", n, got.Sizes[i], want)
		}
	}
	for i, p := range perms {
		want := render.PermissionLines(p)
		if len(want) == 0 && len(got.Perms[i]) == 0 {
			continue
		}
		if fmt.Sprint(want) != fmt.Sprint(got.Perms[i]) {
			t.Errorf("permissions %q: page %v, CLI %v", p, got.Perms[i], want)
		}
	}
}

// runNode runs script (an ES module, in this directory) with input as JSON
// in process.argv[1], and returns what it prints. Without node the test
// is skipped, saying so, except in CI (testenv.ProgramOrCI).
func runNode(t *testing.T, script string, input any) []byte {
	t.Helper()
	node := testenv.ProgramOrCI(t, "node", "make deps installs Debian's nodejs, which runs the page's code here")
	in, err := json.Marshal(input)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(node, "--input-type=module", "-e", script, string(in)).Output()
	if err != nil {
		t.Fatalf("node: %v", err)
	}
	return out
}

// TestPageEnvelopeIsTheBus builds a command's headers in the page's code
// (web/src/envelope.js) and reads them with pkg/envelope: the headers are
// exactly those pkg/bus's Command writes for the same envelope, with the
// console as ce-source.
func TestPageEnvelopeIsTheBus(t *testing.T) {
	const id, when = "0b8e7c9a-3f1d-4c2e-9a6b-5d4e3f2a1b0c", "2026-01-02T03:04:05.678Z"
	out := runNode(t, `import { commandHeaders } from "./web/src/envelope.js";
const [service, verb, id, subject, time] = JSON.parse(process.argv[1]);
console.log(JSON.stringify(commandHeaders(service, verb, id, subject, time)));`,
		[]string{"catalog", "image-rename", id, "7", when})
	var got map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node's output %q: %v", out, err)
	}
	h := nats.Header{}
	for k, v := range got {
		h.Set(k, v)
	}
	env, err := envelope.FromHeader(h)
	if err != nil {
		t.Fatalf("pkg/envelope refuses the page's headers: %v", err)
	}
	at, _ := time.Parse(time.RFC3339Nano, when)
	want := envelope.Envelope{
		ID: id, CorrelationID: id, Subject: "7", Time: at,
		Type:            envelope.Type("catalog", "image-rename"),
		DataSchema:      envelope.DataSchema("cmd", "catalog", "image-rename"),
		Source:          envelope.Source("console"),
		DataContentType: envelope.ContentTypeJSON,
	}
	if env != want {
		t.Errorf("page's envelope\n%+v\nwant\n%+v", env, want)
	}
	if wantH := want.Header(); !maps.EqualFunc(map[string][]string(h), map[string][]string(wantH), slices.Equal) {
		t.Errorf("page's headers\n%v\nbus's\n%v", h, wantH)
	}
}
