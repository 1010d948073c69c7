package simplestreams_test

import (
	"encoding/json"
	"errors"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/simplestreams"
)

func base(t testing.TB) *url.URL {
	t.Helper()
	u, err := indexfile.Base("https://images.example/")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func read(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func parse(t *testing.T, data []byte, opt simplestreams.Options) *simplestreams.Listing {
	t.Helper()
	l, err := simplestreams.ParseProducts(data, "streams/v1/images.json", base(t), opt)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func names(l *simplestreams.Listing) []string {
	var n []string
	for _, e := range l.Entries {
		n = append(n, e.Name)
	}
	return n
}

func TestParseIndexNamesProductsFile(t *testing.T) {
	p, err := simplestreams.ParseIndex(read(t, "index.json"))
	if err != nil || p != "streams/v1/images.json" {
		t.Fatalf("ParseIndex = %q, %v", p, err)
	}
}

func TestRealisticListingDefaults(t *testing.T) {
	l := parse(t, read(t, "images.json"), simplestreams.Options{Arches: []string{"amd64"}})
	got := strings.Join(names(l), " ")
	// cloud variant and arm64 are filtered out; ubuntu is skipped (no sum).
	if want := "alpine_3.20_amd64_default debian_bookworm_amd64_default"; got != want {
		t.Fatalf("names = %q, want %q", got, want)
	}
	d := l.Entries[1]
	if d.Version != "20261205_05:24" {
		t.Errorf("version = %q: the newest of three unordered builds is 20261205_05:24", d.Version)
	}
	wantURL := "https://images.example/images/debian/bookworm/amd64/default/20261205_05:24/rootfs.tar.xz"
	if d.URL != wantURL || d.FileType != simplestreams.RootTarXz || d.Size != 94371840 {
		t.Errorf("entry = %+v, want URL %s", d, wantURL)
	}
	if len(d.SHA256) != 64 || len(d.CombinedSHA256) != 64 || d.SHA256 == d.CombinedSHA256 {
		t.Errorf("sums = %q / %q", d.SHA256, d.CombinedSHA256)
	}
	if d.OS != "Debian" || d.Release != "bookworm" || d.ReleaseTitle != "12" || d.Arch != "amd64" ||
		strings.Join(d.Aliases, ",") != "debian/bookworm,debian/12" || d.Product != "debian:bookworm:amd64:default" {
		t.Errorf("fields = %+v", d)
	}
	a := l.Entries[0]
	if a.Product != "amd64:alpine:3.20:default" || a.Version != "20261204_13:00" {
		t.Errorf("alpine = %s %s: the key order must not matter and the newest build with a rootfs wins", a.Product, a.Version)
	}
	if len(l.Skipped) != 1 || l.Skipped[0].Product != "ubuntu:noble:amd64:default" ||
		!strings.Contains(l.Skipped[0].Reason, "no sha256") || l.Skipped[0].Version != "20261205_07:42" {
		t.Errorf("skipped = %+v, want ubuntu for its missing sha256", l.Skipped)
	}
}

func TestArchSpellingsAndVariants(t *testing.T) {
	data := read(t, "images.json")
	for _, arch := range []string{"arm64", "aarch64", "ARM64"} {
		l := parse(t, data, simplestreams.Options{Arches: []string{arch}})
		if got := strings.Join(names(l), " "); got != "debian_bookworm_arm64_default" {
			t.Errorf("arch %s: names = %q", arch, got)
		}
	}
	l := parse(t, data, simplestreams.Options{Arches: []string{"x86_64"}, Variant: "cloud"})
	if got := strings.Join(names(l), " "); got != "debian_bookworm_amd64_cloud" {
		t.Errorf("cloud: names = %q", got)
	}
	all := parse(t, data, simplestreams.Options{})
	if len(all.Entries) != 3 {
		t.Errorf("no arch filter: %v", names(all))
	}
}

func TestDiskKVMChoice(t *testing.T) {
	l := parse(t, read(t, "images.json"), simplestreams.Options{Arches: []string{"amd64"}, File: simplestreams.DiskKVM})
	got := strings.Join(names(l), " ")
	if got != "debian_bookworm_amd64_default ubuntu_noble_amd64_default" {
		t.Fatalf("names = %q (alpine has no disk, ubuntu's disk has a sum)", got)
	}
	d := l.Entries[0]
	if !strings.HasSuffix(d.URL, "/20261205_05:24/disk.qcow2") || d.FileType != simplestreams.DiskKVM || d.CombinedSHA256 == "" {
		t.Errorf("disk entry = %+v", d)
	}
	if len(l.Skipped) != 1 || !strings.Contains(l.Skipped[0].Reason, "no version has a disk-kvm.img") {
		t.Errorf("skipped = %+v", l.Skipped)
	}
}

// mutate decodes the realistic file, lets f change it and encodes it again.
func mutate(t *testing.T, f func(p map[string]any)) []byte {
	t.Helper()
	var doc map[string]any
	if err := json.Unmarshal(read(t, "images.json"), &doc); err != nil {
		t.Fatal(err)
	}
	f(doc["products"].(map[string]any))
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func rootItem(p map[string]any) map[string]any {
	v := p["debian:bookworm:amd64:default"].(map[string]any)["versions"].(map[string]any)["20261205_05:24"]
	return v.(map[string]any)["items"].(map[string]any)["root.tar.xz"].(map[string]any)
}

func TestHostileItemsAreSkippedWithAReason(t *testing.T) {
	cases := map[string]struct {
		change func(it map[string]any)
		reason string
	}{
		"dotdot":        {func(it map[string]any) { it["path"] = "images/../../etc/passwd" }, "escapes the endpoint"},
		"absolute URL":  {func(it map[string]any) { it["path"] = "http://evil.example/rootfs.tar.xz" }, "absolute URLs"},
		"scheme-less":   {func(it map[string]any) { it["path"] = "//evil.example/rootfs.tar.xz" }, "absolute URLs"},
		"rooted":        {func(it map[string]any) { it["path"] = "//etc/passwd" }, "absolute"},
		"encoded dots":  {func(it map[string]any) { it["path"] = "images/%2e%2e/x" }, "not allowed"},
		"backslash":     {func(it map[string]any) { it["path"] = `images\..\x` }, "not allowed"},
		"control":       {func(it map[string]any) { it["path"] = "images/x\ny" }, "control character"},
		"empty path":    {func(it map[string]any) { it["path"] = "" }, "empty"},
		"non-hex sum":   {func(it map[string]any) { it["sha256"] = strings.Repeat("zz", 32) }, "not hex"},
		"short sum":     {func(it map[string]any) { it["sha256"] = "abcd" }, "4 hex digits"},
		"no sum":        {func(it map[string]any) { delete(it, "sha256") }, "no sha256"},
		"sum is number": {func(it map[string]any) { it["sha256"] = 12 }, "does not decode"},
		"size string":   {func(it map[string]any) { it["size"] = "94371840" }, "does not decode"},
		"negative size": {func(it map[string]any) { it["size"] = -1 }, "size -1"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			data := mutate(t, func(p map[string]any) { c.change(rootItem(p)) })
			l := parse(t, data, simplestreams.Options{Arches: []string{"amd64"}})
			for _, e := range l.Entries {
				if e.Product == "debian:bookworm:amd64:default" {
					t.Fatalf("hostile item became an entry: %+v", e)
				}
			}
			var found bool
			for _, s := range l.Skipped {
				if s.Product == "debian:bookworm:amd64:default" {
					found = strings.Contains(s.Reason, c.reason)
					if !found {
						t.Errorf("reason = %q, want it to mention %q", s.Reason, c.reason)
					}
				}
			}
			if !found && !t.Failed() {
				t.Errorf("not skipped: %+v", l.Skipped)
			}
			if len(l.Entries) != 1 || l.Entries[0].Name != "alpine_3.20_amd64_default" {
				t.Errorf("the other products must survive: %v", names(l))
			}
		})
	}
}

func TestHostileProducts(t *testing.T) {
	cases := map[string]func(p map[string]any){
		"product is a string":   func(p map[string]any) { p["debian:bookworm:amd64:default"] = "x" },
		"versions is a list":    func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["versions"] = []any{1} },
		"arch is a number":      func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["arch"] = 64 },
		"os with a slash":       func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["os"] = "../debian" },
		"release with a space":  func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["release"] = "a b" },
		"release empty":         func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["release"] = "" },
		"release with an under": func(p map[string]any) { p["debian:bookworm:amd64:default"].(map[string]any)["release"] = "a_b" },
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			l := parse(t, mutate(t, change), simplestreams.Options{Arches: []string{"amd64"}})
			for _, e := range l.Entries {
				if e.Product == "debian:bookworm:amd64:default" {
					t.Fatalf("became an entry: %+v", e)
				}
			}
			if name != "arch is a number" && len(l.Skipped) < 2 {
				t.Errorf("skipped = %+v, want the product with a reason", l.Skipped)
			}
		})
	}
}

func TestDuplicateNamesKeepTheFirstKey(t *testing.T) {
	data := mutate(t, func(p map[string]any) {
		p["zz:debian:bookworm:amd64"] = p["debian:bookworm:amd64:default"]
	})
	l := parse(t, data, simplestreams.Options{Arches: []string{"amd64"}})
	var dups int
	for _, s := range l.Skipped {
		if s.Product == "zz:debian:bookworm:amd64" && strings.Contains(s.Reason, "already taken") {
			dups++
		}
	}
	if dups != 1 || len(l.Entries) != 2 {
		t.Errorf("entries %v, skipped %+v", names(l), l.Skipped)
	}
}

func TestBadDocumentsAreErrorsNamingTheFile(t *testing.T) {
	deep := strings.Repeat("[", 20000) + strings.Repeat("]", 20000)
	for name, doc := range map[string]string{
		"not json":        "<html>",
		"wrong format":    `{"format":"index:1.0","products":{}}`,
		"products a list": `{"format":"products:1.0","products":[]}`,
		"deep":            `{"format":"products:1.0","products":` + deep + `}`,
		"empty":           ``,
	} {
		_, err := simplestreams.ParseProducts([]byte(doc), "streams/v1/images.json", base(t), simplestreams.Options{})
		var ie *indexfile.Error
		if !errors.As(err, &ie) || ie.File != "streams/v1/images.json" {
			t.Errorf("%s: err = %v, want an indexfile.Error naming the file", name, err)
		}
	}
	for name, doc := range map[string]string{
		"no images":       `{"format":"index:1.0","index":{"x":{"datatype":"other","path":"a"}}}`,
		"wrong format":    `{"format":"products:1.0"}`,
		"empty path":      `{"format":"index:1.0","index":{"images":{"datatype":"image-downloads","path":""}}}`,
		"index is a list": `{"format":"index:1.0","index":[]}`,
	} {
		if _, err := simplestreams.ParseIndex([]byte(doc)); err == nil || !strings.Contains(err.Error(), "index.json") {
			t.Errorf("index %s: err = %v", name, err)
		}
	}
	if _, err := simplestreams.ParseProducts(read(t, "images.json"), "f", base(t), simplestreams.Options{File: "squashfs"}); err == nil {
		t.Error("an unsupported file type must be refused")
	}
}

func TestName(t *testing.T) {
	for _, c := range []struct{ os, rel, arch, variant, want string }{
		{"Debian", "bookworm", "amd64", "default", "debian_bookworm_amd64_default"},
		{"Alpine", "3.20", "aarch64", "cloud", "alpine_3.20_arm64_cloud"},
		{"openSUSE", "15.6", "x86_64", "default", "opensuse_15.6_amd64_default"},
		{"Rockylinux", "9", "ppc64le", "default", "rockylinux_9_ppc64el_default"},
	} {
		got, err := simplestreams.Name(c.os, c.rel, c.arch, c.variant)
		if err != nil || got != c.want {
			t.Errorf("Name(%s,%s,%s,%s) = %q, %v; want %q", c.os, c.rel, c.arch, c.variant, got, err, c.want)
		}
	}
	for _, bad := range [][4]string{{"", "a", "amd64", "default"}, {"a/b", "a", "amd64", "default"},
		{"a", "..", "amd64", "default"}, {"a", "b", "amd64", "de fault"}, {"a", "b_c", "amd64", "x"},
		{strings.Repeat("a", 65), "b", "amd64", "x"}, {"a", "b", "amd64", "-x"}} {
		if n, err := simplestreams.Name(bad[0], bad[1], bad[2], bad[3]); err == nil {
			t.Errorf("Name%q = %q, want an error", bad, n)
		}
	}
}

func FuzzParseProducts(f *testing.F) {
	f.Add(read(f, "images.json"))
	f.Add([]byte(`{"format":"products:1.0","products":{"a":{"arch":"amd64","os":"x","release":"y","versions":{"1":{"items":{"r":{"ftype":"root.tar.xz","path":"a/../b","sha256":"00","size":1}}}}}}}`))
	b := base(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := simplestreams.ParseProducts(data, "images.json", b, simplestreams.Options{})
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			if !strings.HasPrefix(e.URL, "https://images.example/") || strings.Contains(e.URL, "..") {
				t.Fatalf("entry URL %q escapes the endpoint", e.URL)
			}
			if _, err := indexfile.Hex(e.SHA256, 32); err != nil || e.Size <= 0 {
				t.Fatalf("entry without a valid sum or size: %+v", e)
			}
			if n, err := simplestreams.Name(e.OS, e.Release, e.Arch, e.Variant); err != nil || n != e.Name {
				t.Fatalf("name %q does not follow its fields: %v", e.Name, err)
			}
		}
	})
}

func FuzzParseIndex(f *testing.F) {
	f.Add(read(f, "index.json"))
	f.Fuzz(func(t *testing.T, data []byte) {
		if p, err := simplestreams.ParseIndex(data); err == nil && p == "" {
			t.Fatal("empty path accepted")
		}
	})
}
