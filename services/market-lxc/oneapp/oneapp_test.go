package oneapp_test

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/oneapp"
)

func base(t testing.TB) *url.URL {
	u, err := indexfile.Base("https://marketplace.example/")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func sample(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/appliances.json")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRealisticListing(t *testing.T) {
	l, err := oneapp.Parse(sample(t), base(t))
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 4 || len(l.Skipped) != 0 {
		t.Fatalf("listing = %+v", l)
	}
	img, tmpl, svc, legacy := l.Entries[0], l.Entries[1], l.Entries[2], l.Entries[3]
	if img.ID != "6475e6b4c3d1e7a8b9f01234" || img.Type != oneapp.TypeImage || img.RegTime != 1764892800 || img.OSArch != "x86_64" ||
		img.Template["MEMORY"] != "768" || img.Template["CONTEXT"].(map[string]any)["NETWORK"] != "YES" {
		t.Errorf("image = %+v", img)
	}
	f := img.Files[0]
	if f.Download != "https://marketplace.example/appliance/6475e6b4c3d1e7a8b9f01234/download/0" || f.Size != 268435456 ||
		strings.Join(f.Checksums, ",") != "md5:0123456789abcdef0123456789abcdef,sha256:d4f3b5c8a1e2f3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c" ||
		f.DevPrefix != "vd" || f.Driver != "qcow2" || f.Type != "OS" {
		t.Errorf("file = %+v", f)
	}
	if tmpl.Type != oneapp.TypeVMTemplate || strings.Join(tmpl.Disks, ",") != "Alpine Linux 3.20" || tmpl.RegTime != 1764892800 || len(tmpl.Files) != 0 {
		t.Errorf("vm template = %+v", tmpl)
	}
	if svc.Type != oneapp.TypeServiceTemplate || svc.Roles["vnf"] != "Service Virtual Router" || svc.Template["deployment"] != "straight" {
		t.Errorf("service = %+v", svc)
	}
	if legacy.Type != oneapp.TypeImage || strings.Join(legacy.Files[0].Checksums, ",") != "md5:fedcba9876543210fedcba9876543210" || legacy.Files[0].Size != 2147483648 {
		t.Errorf("legacy = %+v", legacy)
	}
}

// change decodes the sample, lets f change appliance 0 and encodes it.
func change(t *testing.T, f func(a map[string]any)) []byte {
	var doc map[string]any
	if err := json.Unmarshal(sample(t), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc["appliances"].([]any)[0].(map[string]any))
	b, _ := json.Marshal(doc)
	return b
}

func file0(a map[string]any) map[string]any { return a["files"].([]any)[0].(map[string]any) }

func TestHostileAppliances(t *testing.T) {
	for name, c := range map[string]struct {
		f      func(a map[string]any)
		reason string
	}{
		"id with a slash":    {func(a map[string]any) { a["_id"] = map[string]any{"$oid": "../../x"} }, "_id.$oid"},
		"id missing":         {func(a map[string]any) { delete(a, "_id") }, "_id.$oid"},
		"name missing":       {func(a map[string]any) { a["name"] = "  " }, "name"},
		"template not json":  {func(a map[string]any) { a["opennebula_template"] = "CPU=1" }, "opennebula_template"},
		"template an array":  {func(a map[string]any) { a["opennebula_template"] = "[1]" }, "opennebula_template"},
		"template an object": {func(a map[string]any) { a["opennebula_template"] = map[string]any{"CPU": "1"} }, "opennebula_template"},
		"template huge": {func(a map[string]any) {
			a["opennebula_template"] = `{"A":"` + strings.Repeat("a", oneapp.MaxTemplate) + `"}`
		}, "longer"},
		"md5 not hex":          {func(a map[string]any) { file0(a)["md5"] = strings.Repeat("z", 32) }, "not hex"},
		"sha256 short":         {func(a map[string]any) { file0(a)["checksum"].(map[string]any)["sha256"] = "abc" }, "checksum.sha256"},
		"md5s disagree":        {func(a map[string]any) { file0(a)["md5"] = strings.Repeat("1", 32) }, "differs"},
		"size negative":        {func(a map[string]any) { file0(a)["size"] = "-1" }, "size"},
		"size words":           {func(a map[string]any) { file0(a)["size"] = "big" }, "size"},
		"files a string":       {func(a map[string]any) { a["files"] = "x" }, "files"},
		"image without a file": {func(a map[string]any) { a["files"] = []any{} }, "without a file"},
		"unknown type":         {func(a map[string]any) { a["type"] = "CONTAINER" }, "type"},
		"tags a string":        {func(a map[string]any) { a["tags"] = "a,b" }, "tags"},
		"creation_time text":   {func(a map[string]any) { a["creation_time"] = "yesterday" }, "creation_time"},
	} {
		l, err := oneapp.Parse(change(t, c.f), base(t))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(l.Entries) != 3 || len(l.Skipped) != 1 || !strings.Contains(l.Skipped[0].Reason, c.reason) ||
			!strings.HasPrefix(l.Skipped[0].Reason, "appliances[0]") {
			t.Errorf("%s: skipped %+v, want appliances[0] and %q", name, l.Skipped, c.reason)
		}
	}
	dup := change(t, func(a map[string]any) { a["_id"] = map[string]any{"$oid": "6475e6b4c3d1e7a8b9f05678"} })
	if l, _ := oneapp.Parse(dup, base(t)); len(l.Skipped) != 1 || !strings.Contains(l.Skipped[0].Reason, "duplicate") {
		t.Errorf("duplicate id: %+v", l.Skipped)
	}
	for name, doc := range map[string]string{"html": "<html>", "no appliances": `{"sEcho":1}`, "appliances an object": `{"appliances":{}}`, "deep": strings.Repeat("[", 20000)} {
		if _, err := oneapp.Parse([]byte(doc), base(t)); err == nil || !strings.Contains(err.Error(), "appliance") {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestFetchSendsUserAgentAndFollowsDownloads(t *testing.T) {
	disk := []byte("QFI\xfb a small qcow2 stand-in")
	fake := marketfake.NewOpenNebula(t,
		marketfake.OneAppliance{Name: "Busybox", Version: "1.0", Disk: disk, VirtualSize: 1 << 30, Template: `{"CPU":"1","MEMORY":"128"}`},
		marketfake.OneAppliance{Name: "Busybox legacy", Version: "1.0", Disk: disk, LegacyMD5: true},
		marketfake.OneAppliance{Name: "Busybox VM", Version: "1.0", Type: "VMTEMPLATE", Disks: []string{"Busybox"}, Template: `{"CPU":"1"}`},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	l, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 3 {
		t.Fatalf("listing = %+v", l)
	}
	reqs := fake.Requests()
	if ua := reqs[len(reqs)-1].UserAgent; !strings.HasPrefix(ua, "OpenNebula ") {
		t.Errorf("User-Agent = %q", ua)
	}
	md := md5.Sum(disk)
	sh := sha256.Sum256(disk)
	e := l.Entries[0]
	if e.Files[0].Size != 1<<30 || strings.Join(e.Files[0].Checksums, ",") != "md5:"+hex.EncodeToString(md[:])+",sha256:"+hex.EncodeToString(sh[:]) {
		t.Errorf("file = %+v", e.Files[0])
	}
	if got := l.Entries[1].Files[0].Checksums; len(got) != 1 || got[0] != "md5:"+hex.EncodeToString(md[:]) {
		t.Errorf("legacy md5 = %v", got)
	}
	// The download answers 302 and the client lands on the file.
	resp, err := client.Get(e.Files[0].Download)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != string(disk) || resp.Request.URL.Path == "/appliance/"+e.ID+"/download/0" {
		t.Errorf("download: %q via %s", body, resp.Request.URL)
	}
	fake.Tamper(t, e.ID)
	resp, _ = client.Get(e.Files[0].Download)
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) == hex.EncodeToString(sh[:]) {
		t.Error("tampering did not change the file")
	}

	other, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{UserAgent: "curl/8"})
	if err != nil || len(other.Entries) != 0 {
		t.Errorf("without an OpenNebula User-Agent the server lists nothing: %+v, %v", other, err)
	}
	fake.Drop(e.ID)
	if l, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{}); err != nil || len(l.Entries) != 2 {
		t.Errorf("dropped: %+v, %v", l, err)
	}
	fake.Empty(true)
	if l, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{}); err != nil || len(l.Entries) != 0 {
		t.Errorf("empty: %+v, %v", l, err)
	}
	fake.Fail(true)
	if _, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{}); err == nil || !strings.Contains(err.Error(), "/appliance: HTTP 500") {
		t.Errorf("failed: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	f.Add([]byte(`{"appliances":[{"_id":{"$oid":"0123456789abcdef01234567"},"name":"a","files":[{"size":1,"md5":"00"}]}]}`))
	b := base(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := oneapp.Parse(data, b)
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			for _, file := range e.Files {
				if !strings.HasPrefix(file.Download, "https://marketplace.example/appliance/"+e.ID+"/download/") {
					t.Fatalf("download %q", file.Download)
				}
				for _, c := range file.Checksums {
					algo, h, _ := strings.Cut(c, ":")
					if !(algo == "md5" && len(h) == 32 || algo == "sha256" && len(h) == 64) {
						t.Fatalf("checksum %q", c)
					}
				}
			}
		}
	})
}

func TestFetchRefusesAHugeListing(t *testing.T) {
	raw := marketfake.NewRawChunked(t, map[string]int64{"appliance": oneapp.MaxListing + 1})
	_, err := oneapp.Fetch(context.Background(), http.DefaultClient, raw.URL, oneapp.Options{})
	if err == nil || !strings.Contains(err.Error(), "larger than its cap") || !strings.Contains(err.Error(), "/appliance") {
		t.Fatalf("err = %v", err)
	}
}

// TestNetguardClient runs a listing and a 302 download through the
// netguard client the service passes: refused on loopback by default,
// allowed when the fake's address is on the allow list.
func TestNetguardClient(t *testing.T) {
	disk := []byte("QFI\xfb guarded")
	fake := marketfake.NewOpenNebula(t, marketfake.OneAppliance{Name: "Busybox", Version: "1", Disk: disk})
	ctx := context.Background()
	_, err := oneapp.Fetch(ctx, netguard.MustParse("").Client(5*time.Second), fake.URL, oneapp.Options{})
	if _, refused := netguard.AsRefused(err); !refused {
		t.Fatalf("default policy on loopback: err = %v, want a refusal", err)
	}
	u, _ := url.Parse(fake.URL)
	client := netguard.MustParse(u.Host).Client(5 * time.Second)
	l, err := oneapp.Fetch(ctx, client, fake.URL, oneapp.Options{})
	if err != nil || len(l.Entries) != 1 {
		t.Fatalf("allowed: %+v, %v", l, err)
	}
	resp, err := client.Get(l.Entries[0].Files[0].Download)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if body, _ := io.ReadAll(resp.Body); string(body) != string(disk) {
		t.Errorf("download through the redirect = %q", body)
	}
}
