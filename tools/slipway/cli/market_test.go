package cli

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// marketStack runs the whole stack (up.Start: catalog, builder, market,
// real MinIO) with Docker Hub's API faked on loopback (one official image)
// and a real registry holding team/app:v1 and :latest and busybox:1.36.
func marketStack(t *testing.T) (flags []string, host string) {
	t.Helper()
	hub := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch r.URL.Path {
		case "/v2/repositories/library/":
			_, _ = io.WriteString(w, `{"count":1,"next":null,"previous":null,"results":[{"name":"nginx","namespace":"library","description":"Official build of Nginx.","star_count":21000,"pull_count":12000000000,"last_updated":"2024-06-01T10:00:00Z"}]}`)
		case "/v2/repositories/library/nginx/tags":
			_, _ = io.WriteString(w, `{"count":1,"next":null,"previous":null,"results":[{"name":"latest","full_size":75497472}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(hub.Close)
	host = testenv.OCIRegistry(t)
	for _, ref := range []string{"team/app:v1", "team/app:latest", "busybox:1.36"} {
		testenv.Push(t, host+"/"+ref, testenv.RandomImage(t, 2048, 1))
	}
	t.Setenv("SLIPWAY_DOCKERHUB_API", hub.URL)
	// Both listen on loopback, which the services refuse unless opened.
	t.Setenv("SLIPWAY_FETCH_ALLOW", strings.TrimPrefix(hub.URL, "http://")+","+host)
	t.Setenv("SLIPWAY_GUEST_INIT", testenv.Build(t, "./services/builder/cmd/slipway-init", true))
	flags, _ = stack(t)
	return flags, host
}

func TestMarketCommands(t *testing.T) {
	flags, host := marketStack(t)
	r := must(t, slipway(t, flags, "market", "refresh", "DockerHub"), "market refresh")
	if r.stdout != "marketplace 3 \"DockerHub\": 1 apps (1 new, 0 gone)\n" {
		t.Errorf("refresh: %q", r.stdout)
	}
	r = must(t, slipway(t, flags, "market", "create", "--name", "local", "--registry", host), "market create")
	if r.stdout != "marketplace 100 \"local\": 2 apps (2 new, 0 gone)\n" {
		t.Errorf("create: %q", r.stdout)
	}

	// An OpenNebula market template goes to the service owning its MAD.
	tpl := writeFile(t, "lxc.tpl", `NAME = "lxc"
MARKET_MAD = "linuxcontainers"
ENDPOINT = "https://127.0.0.1:1/"
IMAGE_SIZE_MB = "1024"
FILESYSTEM = "ext4"
FORMAT = "qcow2"
FTYPE = "disk-kvm.img"
MONITORING = "NO"
`)
	r = must(t, slipway(t, flags, "market", "create", tpl), "market create FILE")
	if r.stdout != "marketplace 101 \"lxc\" created (monitoring off: run `slipway market refresh lxc`)\n" {
		t.Errorf("create from a template: %q", r.stdout)
	}
	mustShow(t, flags, []string{"market", "show", "lxc"}, "MARKET MAD     : linuxcontainers", "SOURCE         : https://127.0.0.1:1",
		"IMAGE_SIZE_MB  : 1024", "FORMAT         : qcow2", "FTYPE          : disk-kvm.img")
	r = slipway(t, flags, "market", "refresh", "lxc")
	// The guard refuses the endpoint (loopback, not in SLIPWAY_FETCH_ALLOW):
	// the failed listing is recorded on the marketplace.
	if r.code != 1 || !strings.Contains(r.stderr, "refusing to connect to 127.0.0.1:1") {
		t.Errorf("refresh of a refused endpoint: exit %d, %s", r.code, r.stderr)
	}
	mustShow(t, flags, []string{"market", "show", "lxc"}, "ERROR          : ", "refusing to connect to 127.0.0.1:1")
	r = slipway(t, flags, "market", "create", writeFile(t, "bad.tpl", "NAME = \"x\"\nMARKET_MAD = \"linuxcontainers\"\nCOLOUR = \"red\"\n"))
	if r.code != 1 || !strings.Contains(r.stderr, `COLOUR = "red": not a market template attribute`) {
		t.Errorf("template with an unknown attribute: exit %d, %s", r.code, r.stderr)
	}

	// Both services' marketplaces, by ID.
	r = must(t, slipway(t, flags, "market", "list"), "market list")
	want := "" +
		" ID NAME                     SIZE AVAIL APPS MAD             ZONE\n" +
		"  0 OpenNebula Public          0M     -    0 one                0\n" +
		"  1 Linux Containers           0M     -    0 linuxcontainers    0\n" +
		"  2 TurnKey Linux Containers   0M     -    0 turnkeylinux       0\n" +
		"  3 DockerHub                  0M     -    1 dockerhub          0\n" +
		"100 local                      0M     -    2 registry           0\n" +
		"101 lxc                        0M     -    0 linuxcontainers    0\n"
	if r.stdout != want {
		t.Errorf("market list:\n%s\nwant:\n%s", r.stdout, want)
	}

	mustShow(t, flags, []string{"market", "show", "local"}, "USER           : oneadmin", "GROUP          : oneadmin",
		"PERMISSIONS\nOWNER          : uma\nGROUP          : u--\nOTHER          : u--")
	must(t, slipway(t, flags, "market", "chmod", "local", "740"), "market chmod")
	mustShow(t, flags, []string{"market", "show", "local"}, "OTHER          : ---")

	r = must(t, slipway(t, flags, "market", "app", "list", "local"), "market app list")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "ID NAME VERSION SIZE STAT TYPE REGTIME MARKET ZONE" {
		t.Fatalf("app list:\n%s", r.stdout)
	}
	var row []string
	for _, l := range lines[1:] {
		if f := strings.Fields(l); f[1] == "team/app" {
			row = f
		}
	}
	if len(row) != 9 || row[2] != "latest" || row[4] != "rdy" || row[5] != "img" || row[7] != "local" || row[8] != "0" {
		t.Errorf("team/app row = %q in\n%s", row, r.stdout)
	}
	// Every marketplace's apps, of both services.
	r = must(t, slipway(t, flags, "market", "app", "list"), "market app list (all)")
	if n := len(strings.Split(strings.TrimSpace(r.stdout), "\n")); n != 4 || !strings.Contains(r.stdout, "nginx") {
		t.Errorf("app list of every marketplace:\n%s", r.stdout)
	}
	// MARKET/APP names an app of one marketplace.
	mustShow(t, flags, []string{"market", "app", "show", "local/team/app"}, "MARKETPLACE    : local (100)")

	mustShow(t, flags, []string{"market", "app", "show", "team/app"}, "TAGS           : latest, v1", "SOURCE         : docker://"+host+"/team/app",
		"VM TEMPLATE\n", `NAME = "team/app"`, `IMAGE = "team/app"`, `KERNEL_CMD = "console=ttyS0 init=/.slipway/init"`,
		`KERNEL_DS = "$FILE[IMAGE=\"kernel\", IMAGE_UNAME=\"oneadmin\"]"`)

	// The import is followed to READY; the template names the image by ID.
	r = must(t, slipway(t, flags, "market", "app", "import", "local/team/app", "--name", "web", "--tag", "v1", "--wait"), "market app import")
	m := regexp.MustCompile(`(?m)^image (\d+) "web": importing team/app from docker://` + regexp.QuoteMeta(host) + `/team/app:v1\?filesystem=ext4&format=qcow2$`).FindStringSubmatch(r.stdout)
	if m == nil || !strings.Contains(r.stdout, "image "+m[1]+": READY format qcow2") {
		t.Fatalf("import:\n%s%s", r.stdout, r.stderr)
	}
	r = must(t, slipway(t, flags, "market", "app", "show", "team/app", "--market", "local"), "market app show")
	if !strings.Contains(r.stdout, `NAME = "web"`) || !strings.Contains(r.stdout, `IMAGE_ID = "`+m[1]+`"`) || strings.Contains(r.stdout, "IMAGE_UNAME = ") {
		t.Errorf("app show after import lacks the imported template (DISK = [ IMAGE_ID = %s ]):\n%s", m[1], r.stdout)
	}
	r = must(t, slipway(t, flags, "image", "show", m[1], "--json"), "image show")
	if !strings.Contains(r.stdout, `"MARKETPLACE_APP": "team/app"`) && !strings.Contains(r.stdout, `"MARKETPLACE_APP":"team/app"`) {
		t.Errorf("image %s lacks its marketplace attributes:\n%s", m[1], r.stdout)
	}
	// The catalog's refusal is the import's error.
	r = slipway(t, flags, "market", "app", "import", "team/app", "--name", "web")
	if r.code != 1 || !strings.Contains(r.stderr, `the catalog refused image "web"`) || !strings.Contains(r.stderr, "already exists") {
		t.Errorf("import under a taken name: exit %d, %s", r.code, r.stderr)
	}

	r = must(t, slipway(t, flags, "market", "update", "local", "--monitoring=false"), "market update")
	if r.stdout != "marketplace 100 \"local\" updated: monitoring No\n" {
		t.Errorf("update: %q", r.stdout)
	}
	r = slipway(t, flags, "market", "create", "--name", "local", "--registry", host)
	if r.code != 1 || !strings.Contains(r.stderr, `already named "local"`) {
		t.Errorf("duplicate create: exit %d, %s", r.code, r.stderr)
	}
	must(t, slipway(t, flags, "market", "delete", "local"), "market delete")
	r = slipway(t, flags, "market", "app", "show", "team/app")
	if r.code != 1 || !strings.Contains(r.stderr, `no app is named "team/app"`) {
		t.Errorf("show after delete: exit %d, %s", r.code, r.stderr)
	}
}

// writeFile writes text to a file named name in a test directory.
func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
