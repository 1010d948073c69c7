package cli

import (
	"archive/tar"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// bootImage pushes to the registry host a busybox-static image whose
// process prints token on the serial console and then waits, so that the
// VM stays RUNNING until it is terminated.
func bootImage(t *testing.T, ref, token string) {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Skipf("busybox-static is needed to build the guest's image (make deps): %v", err)
	}
	at := time.Unix(1700000000, 0)
	entry := func(name string, mode int64, typ byte, link string, body []byte) testenv.TarEntry {
		return testenv.TarEntry{Header: tar.Header{Name: name, Mode: mode, Typeflag: typ, Linkname: link, Size: int64(len(body)), ModTime: at}, Body: body}
	}
	layer := testenv.TarLayer(t,
		entry("bin/", 0o755, tar.TypeDir, "", nil),
		entry("bin/busybox", 0o755, tar.TypeReg, "", busybox),
		entry("bin/sh", 0o777, tar.TypeSymlink, "busybox", nil),
		entry("etc/", 0o755, tar.TypeDir, "", nil),
		entry("etc/os-release", 0o644, tar.TypeReg, "", []byte("ID=busybox\nNAME=BusyBox\n")))
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Push(t, ref, testenv.ForPlatform(t, img, "amd64", v1.Config{
		Entrypoint: []string{"/bin/busybox", "sh", "-c"},
		Cmd:        []string{"while true; do echo " + token + "; sleep 5; done"},
		Env:        []string{"PATH=/bin"},
	}))
}

// vmRowJS is a JS expression for the VMs list's row of the VM named name.
func vmRowJS(name string) string {
	return fmt.Sprintf(`[...document.querySelectorAll("#vms tbody tr")].find(r => r.querySelector('td[data-col="NAME"]').textContent === %q)`, name)
}

// tableNames is the JS expression of the NAME cells of a list.
func tableNames(table string) string {
	return fmt.Sprintf(`[...document.querySelectorAll('#%s td[data-col="NAME"]')].map(td => td.textContent)`, table)
}

// TestConsoleViewsInBrowser drives the console's create, progress, VM and
// marketplace views in Debian's chromium against a real `slipway up`
// (builder, converter, kernel-registry, launcher with QEMU: TCG here):
// alice imports a docker:// image from a registry on loopback with the
// create form; the running-imports panel shows its bars moving, phase by
// phase, until the image is READY. She clones it from its detail view.
// She instantiates a template booting it from the VMs view; the VM's
// serial console shows the token its process prints, and she terminates
// it from the page. The marketplaces view lists the apps of a registry
// marketplace on loopback, finds one by search and imports it. bob, logged
// in beside her, sees none of her images or VMs. Screenshots of each view
// go to the test's artifacts (make screenshots: docs/console/).
func TestConsoleViewsInBrowser(t *testing.T) {
	newTab := browser(t)
	deb := testenv.NeedRepoFile(t, "bin/kernel/linux-image.deb", "run make kernel (tools/fetch-kernel.sh)")
	host := testenv.OCIRegistry(t)
	token := "CONSOLE-" + randomToken(t)
	bootImage(t, host+"/test/bootme:1.0", token)
	testenv.Push(t, host+"/team/app:v1", testenv.RandomImage(t, 2048, 1))
	t.Setenv("SLIPWAY_FETCH_ALLOW", host)
	// Workers report often, so that a small import shows its bars moving.
	t.Setenv("SLIPWAY_PROGRESS_INTERVAL", "50ms")
	t.Setenv("SLIPWAY_GUEST_INIT", testenv.Build(t, "./services/builder/cmd/slipway-init", true))
	t.Setenv("SLIPWAY_INITRD_INIT", testenv.Build(t, "./services/kernel-registry/cmd/slipway-initrd", true))
	flags, _, st := stackWith(t, func(c *up.Config) {
		c.WebSocketAddr = "127.0.0.1:-1"
		c.ConsoleHTTPAddr = "127.0.0.1:0"
	})
	shots := screenshotDir(t)
	creds, as := consoleUsers(t, flags, "alice", "bob")

	// oneadmin's kernel (and the initrd kernel-registry builds from the
	// package's modules), which others may use; a registry marketplace.
	kernel := strings.TrimSpace(strings.TrimPrefix(must(t, slipway(t, flags, "kernel", "add", "--name", "debian", deb), "kernel add").stdout, "ID: "))
	shareKernel(t, flags, kernel)
	must(t, slipway(t, flags, "market", "create", "--name", "local", "--registry", host), "market create")

	ctx, cancel := newTab()
	defer cancel()
	alice := &consolePage{t: t, ctx: ctx, shot: shots}
	alice.login(st.ConsoleURL, creds["alice"])

	// Create from docker://, with the CLI's options.
	alice.run("open the create view", chromedp.Click(chromedp.CSS("#tab-create")), chromedp.Click(chromedp.CSS(`input[name="source"][value="docker"]`)))
	alice.run("fill the create form",
		chromedp.SetValue(chromedp.CSS("#create-name"), "bootme"),
		chromedp.SetValue(chromedp.CSS("#create-ref"), host+"/test/bootme"),
		chromedp.SetValue(chromedp.CSS("#create-tag"), "1.0"),
		chromedp.SetValue(chromedp.CSS("#create-dsize"), "64"),
		chromedp.SetValue(chromedp.CSS("#create-dfs"), "ext4"),
		chromedp.SetValue(chromedp.CSS("#create-dformat"), "qcow2"))
	alice.screenshot("create")
	// Every bar the page draws is recorded, however briefly it shows.
	alice.run("watch the bars", chromedp.Evaluate[chromedp.Void](`window.barsDrawn = [];
		new MutationObserver(() => document.querySelectorAll("#imports .phase").forEach(p => window.barsDrawn.push(p.dataset.phase + " " + p.dataset.done + " " + p.textContent)))
			.observe(document.querySelector("#imports"), {subtree: true, childList: true, characterData: true})`))
	alice.run("create", chromedp.Click(chromedp.CSS("#create-submit")))
	alice.waitFor("bootme listed", rowJS("bootme")+` !== undefined`)

	// The bars move: sample them until the image is READY.
	seen := map[string]bool{}
	shot := false
	deadline := time.Now().Add(4 * time.Minute)
	for {
		state := eval[string](alice, "bootme's state", rowJS("bootme")+`?.dataset.state ?? ""`)
		for _, b := range eval[[]string](alice, "the bars", `window.barsDrawn`) {
			seen[b] = true
		}
		if !shot && eval[bool](alice, "bars shown", `document.querySelector("#imports .phase") !== null`) {
			alice.screenshot("progress")
			shot = true
		}
		if state == "READY" || state == "ERROR" || time.Now().After(deadline) {
			if state != "READY" {
				t.Fatalf("bootme is %q (detail error %q)", state, alice.text(`#detail-attrs dd[data-field="ERROR"]`))
			}
			break
		}
		time.Sleep(150 * time.Millisecond)
	}
	t.Logf("bars seen: %q", keys(seen))
	if len(seen) < 2 {
		t.Errorf("the import's bars did not move: %q", keys(seen))
	}
	if !hasLine(seen, "%") {
		t.Errorf("no bar showed a share done: %q", keys(seen))
	}
	alice.waitFor("the running imports panel empties", `document.querySelector("#imports").hidden`)
	id := eval[string](alice, "bootme's ID", rowJS("bootme")+`.dataset.id`)

	// Its detail: no snapshots, the permissions spelled out; the clone.
	alice.run("open bootme", chromedp.Evaluate[chromedp.Void](rowJS("bootme")+`.click()`))
	alice.waitFor("bootme's detail", `document.querySelector("#detail-title").textContent.endsWith(": bootme")`)
	if got := alice.text("#snapshots-empty"); got != "No snapshots." {
		t.Errorf("snapshots: %q", got)
	}
	if got := eval[string](alice, "owner rights", `[...document.querySelectorAll("#detail-perms tbody tr:first-child td")].map(td => td.textContent).join(" ")`); got != "um- ✓ ✓ —" {
		t.Errorf("OWNER row %q, want um- ✓ ✓ —", got)
	}
	alice.run("clone", chromedp.SetValue(chromedp.CSS("#clone-name"), "bootme-copy"), chromedp.Click(chromedp.CSS("#act-clone")))
	alice.waitWithin("the clone READY", rowJS("bootme-copy")+`?.dataset.state === "READY"`, 2*time.Minute)
	alice.run("open bootme again", chromedp.Evaluate[chromedp.Void](rowJS("bootme")+`.click()`))
	alice.screenshot("image-detail")

	// A template booting it, made with the CLI; instantiated from the page.
	tmpl := fmt.Sprintf("NAME = \"bootme-vm\"\nCPU = 1\nMEMORY = 256\nDISK = [ IMAGE_ID = %s ]\nOS = [ KERNEL_DS = \"$FILE[IMAGE_ID=%s]\", ROOT = \"vda\" ]\n", id, kernel)
	file := filepath.Join(t.TempDir(), "bootme.tmpl")
	if err := os.WriteFile(file, []byte(tmpl), 0o644); err != nil {
		t.Fatal(err)
	}
	must(t, slipway(t, as("alice"), "template", "create", file), "template create")
	alice.run("open the VMs view", chromedp.Click(chromedp.CSS("#tab-vms")))
	alice.waitFor("the template listed", `[...document.querySelectorAll("#templates td[data-col='NAME']")].some(td => td.textContent === "bootme-vm")`)
	alice.run("pick the template", chromedp.Evaluate[chromedp.Void](`[...document.querySelectorAll("#templates tbody tr")].find(r => r.textContent.includes("bootme-vm")).click()`))
	alice.run("instantiate", chromedp.SetValue(chromedp.CSS("#instantiate-name"), "web-1"), chromedp.Click(chromedp.CSS("#instantiate")))
	alice.waitFor("web-1 listed", vmRowJS("web-1")+` !== undefined`)
	alice.waitFor("web-1's detail", `document.querySelector("#vm-title").textContent.endsWith(": web-1")`)
	alice.waitWithin("the token on web-1's console", `document.querySelector("#vm-console").textContent.includes(`+fmt.Sprintf("%q", token)+`)`, 5*time.Minute)
	alice.waitFor("web-1 RUNNING", vmRowJS("web-1")+`?.dataset.state === "RUNNING"`)
	alice.screenshot("vms")

	// bob, beside her, sees none of her images or VMs.
	ctx2, cancel2 := newTab()
	defer cancel2()
	bob := &consolePage{t: t, ctx: ctx2, shot: shots}
	bob.login(st.ConsoleURL, creds["bob"])
	bob.run("bob's VMs view", chromedp.Click(chromedp.CSS("#tab-vms")))
	bob.waitFor("bob's VM list loaded", `!document.querySelector("#vms-empty").hidden`)
	// oneadmin's shared kernel shows: the lists work for bob.
	bob.waitFor("oneadmin's shared kernel on bob's page", rowJS("debian")+` !== undefined`)
	if names := eval[[]string](bob, "bob's VMs", tableNames("vms")); len(names) != 0 {
		t.Errorf("bob's page lists VMs %q, want none of alice's", names)
	}
	noneOfAlices(t, bob)

	// Terminate from the page (hard: the guest's process never ends).
	alice.run("terminate", chromedp.Click(chromedp.CSS("#vm-hard")), chromedp.Click(chromedp.CSS("#vm-terminate")),
		chromedp.Click(chromedp.CSS("#vm-confirm-terminate")))
	alice.waitWithin("web-1 DONE", `document.querySelector("#vm-detail").dataset.state === "DONE"`, 2*time.Minute)
	alice.waitFor("web-1 off the list of live VMs", vmRowJS("web-1")+` === undefined`)
	mustShow(t, as("alice"), []string{"vm", "show", "web-1"}, "DONE")

	// The marketplaces: the registry's apps, a search, an import.
	alice.run("open the marketplaces", chromedp.Click(chromedp.CSS("#tab-markets")))
	alice.waitFor("local listed", `[...document.querySelectorAll("#markets td[data-col='NAME']")].some(td => td.textContent === "local")`)
	alice.run("search", chromedp.SetValue(chromedp.CSS("#apps-filter"), "app"), chromedp.Click(chromedp.CSS("#apps-search-button")))
	alice.waitFor("team/app found", `(`+tableNames("apps")+`).join() === "team/app"`)
	alice.run("open team/app", chromedp.Evaluate[chromedp.Void](`document.querySelector("#apps tbody tr").click()`))
	alice.waitFor("the import form", `!document.querySelector("#import").hidden`)
	alice.run("import", chromedp.SetValue(chromedp.CSS("#import-name"), "from-market"), chromedp.SetValue(chromedp.CSS("#import-tag"), "v1"))
	alice.screenshot("markets")
	alice.run("import", chromedp.Click(chromedp.CSS("#import-submit")))
	alice.waitWithin("from-market READY", rowJS("from-market")+`?.dataset.state === "READY"`, 3*time.Minute)
	mustShow(t, as("alice"), []string{"template", "show", "from-market"}, "IMAGE_ID")
	noneOfAlices(t, bob)
}

// noneOfAlices checks that bob's page lists none of alice's images.
func noneOfAlices(t *testing.T, bob *consolePage) {
	t.Helper()
	for _, name := range eval[[]string](bob, "bob's images", tableNames("images")) {
		if slices.Contains([]string{"bootme", "bootme-copy", "from-market"}, name) {
			t.Errorf("bob's page lists alice's image %q", name)
		}
	}
}

// shareKernel waits until kernel-registry's images of kernel id (the
// kernel, and the initrd it builds from the package's modules) are READY,
// then lets others use them (604), as an operator shares a kernel.
func shareKernel(t *testing.T, flags []string, id string) {
	t.Helper()
	var k struct {
		Initrd *int64 `json:"initrd"`
	}
	r := must(t, slipway(t, flags, "kernel", "show", id, "--json"), "kernel show")
	if err := json.Unmarshal([]byte(r.stdout), &k); err != nil || k.Initrd == nil {
		t.Fatalf("kernel %s: no initrd (%v): %s", id, err, r.stdout)
	}
	for _, img := range []string{id, strconv.FormatInt(*k.Initrd, 10)} {
		deadline := time.Now().Add(3 * time.Minute)
		for !strings.Contains(slipway(t, flags, "image", "show", img).stdout, "STATE          : rdy") {
			if time.Now().After(deadline) {
				t.Fatalf("kernel-registry's image %s is not READY", img)
			}
			time.Sleep(time.Second)
		}
		must(t, slipway(t, flags, "image", "chmod", img, "604"), "image chmod "+img)
	}
}

func randomToken(t *testing.T) string {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

func hasLine(m map[string]bool, part string) bool {
	for k := range m {
		if strings.Contains(k, part) {
			return true
		}
	}
	return false
}
