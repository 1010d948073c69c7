package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// browser starts Debian's chromium headless for the console tests and
// returns a function that opens a tab: the first in the browser's default
// context, each later one in a browser context of its own (no cookies or
// storage shared: another person). Without chromium the test is skipped,
// saying so, except in CI (testenv.ProgramOrCI).
func browser(t *testing.T) (newTab func() (context.Context, context.CancelFunc)) {
	t.Helper()
	bin := testenv.ProgramOrCI(t, "chromium", "make deps installs Debian's chromium, which the console's browser test drives")
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(bin),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.NoSandbox, // root in CI; the page is our own
		chromedp.DisableGPU,
		chromedp.WindowSize(1280, 860),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	var first context.Context
	return func() (context.Context, context.CancelFunc) {
		var ctx context.Context
		var cancel context.CancelFunc
		if first == nil {
			ctx, cancel = chromedp.NewContext(alloc)
			first = ctx
		} else {
			ctx, cancel = chromedp.NewContext(first, chromedp.WithNewBrowserContext())
		}
		return ctx, cancel
	}
}

// consolePage is one browser tab on the console.
type consolePage struct {
	t    *testing.T
	ctx  context.Context
	shot string // where screenshots go
}

func (p *consolePage) run(what string, steps ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	if err := chromedp.Do(p.ctx, steps...); err != nil {
		p.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("browser: %s: %v", what, err)
	}
}

// screenshot writes the page as <name>.png into the test's artifacts.
func (p *consolePage) screenshot(name string) {
	p.t.Helper()
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err != nil {
		p.t.Logf("screenshot %s: %v", name, err)
		return
	}
	path := filepath.Join(p.shot, name+".png")
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Errorf("screenshot %s: %v", name, err)
	}
	p.t.Logf("screenshot %s", path)
}

// text is the text of the first element the CSS selector sel matches.
func (p *consolePage) text(sel string) string {
	p.t.Helper()
	return eval[string](p, "read "+sel, fmt.Sprintf("document.querySelector(%q)?.textContent ?? ''", sel))
}

// eval is the value of the JavaScript expression js in the page.
func eval[T any](p *consolePage, what, js string) T {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Evaluate[T](js))
	if err != nil {
		p.screenshot("failed-" + strings.ReplaceAll(what, " ", "-"))
		p.t.Fatalf("browser: %s: %v", what, err)
	}
	return v
}

// waitFor waits until js (an expression) is true in the page, up to 60s.
func (p *consolePage) waitFor(what, js string) {
	p.t.Helper()
	p.waitWithin(what, js, 60*time.Second)
}

// waitWithin waits until js (an expression) is true in the page, up to
// within, and fails the test with the page's messages otherwise.
func (p *consolePage) waitWithin(what, js string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if ok, err := chromedp.Run(p.ctx, chromedp.Evaluate[bool](js)); err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			p.screenshot("timeout-" + strings.ReplaceAll(what, " ", "-"))
			msgs, _ := chromedp.Run(p.ctx, chromedp.Evaluate[[]string](`["#error", "#status", "#upload-status"].map(s => document.querySelector(s)?.textContent ?? "")`))
			p.t.Fatalf("browser: %s: not within %s (page error, status, upload status: %q)", what, within, msgs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// login opens the console and logs in with the credentials file creds,
// pasted as a person would.
func (p *consolePage) login(url, creds string) {
	p.t.Helper()
	text, err := os.ReadFile(creds)
	if err != nil {
		p.t.Fatal(err)
	}
	p.run("open the console", chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	p.run("log in", chromedp.SetValue(chromedp.CSS("#creds-text"), string(text)),
		chromedp.Click(chromedp.CSS("#login-button")), chromedp.WaitVisible(chromedp.CSS("#main")))
}

// screenshotDir is where the console tests' screenshots go: the test's
// artifacts, or $SLIPWAY_CONSOLE_SHOTS (make screenshots: docs/console).
func screenshotDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("SLIPWAY_CONSOLE_SHOTS")
	if dir == "" {
		return t.ArtifactDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// consoleUsers creates users with the CLI: their .creds files, and the
// CLI's flags acting as one of them.
func consoleUsers(t *testing.T, flags []string, users ...string) (creds map[string]string, as func(user string) []string) {
	t.Helper()
	work := t.TempDir()
	creds = map[string]string{}
	for _, u := range users {
		creds[u] = filepath.Join(work, u+".creds")
		must(t, slipway(t, flags, "user", "create", u, "--out", creds[u]), "user create "+u)
	}
	return creds, func(user string) []string {
		f := append([]string{}, flags...)
		for i := range f {
			if f[i] == "--creds" {
				f[i+1] = creds[user]
			}
		}
		return f
	}
}

// rowJS is a JS expression for the list's row of the image named name.
func rowJS(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#images tbody tr")].find(r => r.querySelector('td[data-col="NAME"]').textContent === %q)`, name)
}

// TestConsoleInBrowser drives the web console in Debian's chromium
// (headless, chromedp) against a real `slipway up`: alice logs in with her
// credentials file; an image she creates with the CLI appears in the live
// list and goes LOCKED → READY there (its history shows the transition);
// she renames it from the page (the CLI sees the new name); a chmod of
// oneadmin's image is refused with the catalog's own message, the one the
// CLI prints; bob, logged in beside her, sees none of her images, not even
// one created while he watches, which alice's page shows; when oneadmin
// takes the use right back (chmod 600) both pages drop that image; she makes that
// one persistent and deletes it from the page. Screenshots go
// to the test's artifacts (go test -artifacts; `make screenshots` copies
// them into docs/console/).
func TestConsoleInBrowser(t *testing.T) {
	newTab := browser(t)
	flags, _, st := stackWith(t, func(c *up.Config) {
		c.WebSocketAddr = "127.0.0.1:-1"
		c.ConsoleHTTPAddr = "127.0.0.1:0"
	})
	if !strings.HasPrefix(st.ConsoleURL, "http://127.0.0.1:") {
		t.Fatalf("ConsoleURL %q", st.ConsoleURL)
	}
	shots := screenshotDir(t)
	creds, as := consoleUsers(t, flags, "alice", "bob")
	// oneadmin's image, which others may use (604) but not administer.
	mustShow(t, flags, []string{"image", "create", "--name", "admins-disk", "--type", "DATABLOCK", "--size", "8", "--wait", "--timeout", "2m"}, "READY")
	must(t, slipway(t, flags, "image", "chmod", "admins-disk", "604"), "image chmod")

	ctx, cancel := newTab()
	defer cancel()
	alice := &consolePage{t: t, ctx: ctx, shot: shots}
	alice.run("open the console", chromedp.Navigate(st.ConsoleURL), chromedp.WaitVisible(chromedp.CSS(`body[data-ready="true"]`)))
	alice.screenshot("login")

	// A file that is not credentials: refused on the page, saying why.
	alice.run("log in with garbage", chromedp.SetValue(chromedp.CSS("#creds-text"), "hello"), chromedp.Click(chromedp.CSS("#login-button")))
	alice.waitFor("refusal of a bad file", `document.querySelector("#error").textContent.includes("not a NATS credentials file")`)

	alice.login(st.ConsoleURL, creds["alice"])
	if who := alice.text("#whoami"); who != "alice" {
		t.Errorf("logged in as %q, want alice", who)
	}
	alice.waitFor("oneadmin's shared image listed", rowJS("admins-disk")+` !== undefined`)

	// The CLI creates an image as alice: the page shows it live.
	start := time.Now()
	must(t, slipway(t, as("alice"), "image", "create", "--name", "web", "--type", "DATABLOCK", "--size", "8", "--wait", "--timeout", "2m"), "image create web")
	alice.waitFor("web listed READY", rowJS("web")+`?.dataset.state === "READY"`)
	t.Logf("alice's page showed web READY %s after the CLI started creating it", time.Since(start))
	cells := eval[[]string](alice, "read web's row", `[...`+rowJS("web")+`.children].map(td => td.textContent)`)
	if len(cells) != 10 || cells[1] != "alice" || cells[3] != "web" || cells[5] != "8M" || cells[6] != "DB" || cells[7] != "No" || cells[8] != "rdy" {
		t.Errorf("web's row %q, want oneimage list's columns (alice … web default 8M DB No rdy 0)", cells)
	}
	alice.screenshot("images")

	// Its detail, opened by keyboard: attributes, permissions, the history
	// with LOCKED → READY.
	alice.run("open web by keyboard", chromedp.Evaluate[chromedp.Void](rowJS("web")+`.focus()`), chromedp.KeyEvent("\r"))
	alice.waitFor("web's detail", `document.querySelector("#detail-title").textContent.endsWith(": web")`)
	alice.waitFor("history LOCKED → READY", `document.querySelector("#detail-history").textContent.includes("LOCKED → READY")`)
	if owner := alice.text(`#detail-perms tbody tr:first-child td`); owner != "um-" {
		t.Errorf("web's OWNER permissions %q, want um-", owner)
	}

	// Rename from the page; the CLI sees the new name.
	alice.run("rename", chromedp.SetValue(chromedp.CSS("#rename-name"), "web-renamed"), chromedp.Click(chromedp.CSS("#act-rename")))
	alice.waitFor("renamed in the list", rowJS("web-renamed")+` !== undefined`)
	mustShow(t, as("alice"), []string{"image", "show", "web-renamed"}, "NAME           : web-renamed")
	alice.screenshot("detail")

	// chmod of oneadmin's image: the catalog's own refusal, as the CLI gets it.
	r := slipway(t, as("alice"), "image", "chmod", "admins-disk", "666")
	if r.code == 0 {
		t.Fatalf("CLI: alice chmod oneadmin's image: exit 0\n%s", r.stdout)
	}
	alice.run("open admins-disk", chromedp.Evaluate[chromedp.Void](rowJS("admins-disk")+`.click()`))
	alice.waitFor("admins-disk's detail", `document.querySelector("#detail-title").textContent.endsWith(": admins-disk")`)
	alice.run("chmod", chromedp.SetValue(chromedp.CSS("#chmod-bits"), "666"), chromedp.Click(chromedp.CSS("#act-chmod")))
	alice.waitFor("chmod refused", `document.querySelector("#error").textContent.includes("refused")`)
	msg := alice.text("#error")
	_, refusal, _ := strings.Cut(msg, "chmod refused: ")
	if !strings.Contains(refusal, "may not manage image") || !strings.Contains(r.stderr, refusal) {
		t.Errorf("page's refusal %q is not the catalog's message the CLI prints: %s", msg, r.stderr)
	}
	alice.screenshot("refused")

	// bob, beside her, sees oneadmin's shared image and nothing of alice's.
	ctx2, cancel2 := newTab()
	defer cancel2()
	bob := &consolePage{t: t, ctx: ctx2, shot: shots}
	bob.login(st.ConsoleURL, creds["bob"])
	bob.waitFor("oneadmin's shared image listed for bob", rowJS("admins-disk")+` !== undefined`)
	must(t, slipway(t, as("alice"), "image", "create", "--name", "while-bob-watches", "--type", "DATABLOCK", "--size", "8", "--wait", "--timeout", "2m"), "image create while-bob-watches")
	alice.waitFor("alice's new image on her page", rowJS("while-bob-watches")+`?.dataset.state === "READY"`)
	time.Sleep(time.Second) // bob's page had the same events
	names := eval[[]string](bob, "bob's list", `[...document.querySelectorAll('#images td[data-col="NAME"]')].map(td => td.textContent)`)
	if len(names) != 1 || names[0] != "admins-disk" {
		t.Errorf("bob's page lists %q, want only oneadmin's shared admins-disk", names)
	}
	bob.screenshot("other-user")
	// oneadmin takes the use right back: bob's page drops the image.
	must(t, slipway(t, flags, "image", "chmod", "admins-disk", "600"), "image chmod 600")
	bob.waitFor("admins-disk gone from bob's page after chmod 600", rowJS("admins-disk")+` === undefined`)
	alice.waitFor("admins-disk gone from alice's page after chmod 600", rowJS("admins-disk")+` === undefined`)

	// More of alice's actions from the page: persistent, then delete
	// (asked twice); the list follows from the events, the CLI agrees.
	alice.run("open while-bob-watches", chromedp.Evaluate[chromedp.Void](rowJS("while-bob-watches")+`.click()`))
	alice.waitFor("its detail", `document.querySelector("#detail-title").textContent.endsWith(": while-bob-watches")`)
	alice.run("persistent", chromedp.Click(chromedp.CSS("#act-persistent")))
	alice.waitFor("PER Yes", rowJS("while-bob-watches")+`?.querySelector('td[data-col="PER"]').textContent === "Yes"`)
	alice.run("delete", chromedp.Click(chromedp.CSS("#act-delete")), chromedp.Click(chromedp.CSS("#confirm-delete")))
	alice.waitFor("gone from the list", rowJS("while-bob-watches")+` === undefined`)
	for _, img := range list(t, as("alice")) {
		if img.Name == "while-bob-watches" {
			t.Errorf("deleted from the page, the CLI still lists it: %+v", img)
		}
	}
}
