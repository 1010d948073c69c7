package lxcindex_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/lxcindex"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

// sample is index-system as images.linuxcontainers.org writes it.
const sample = `almalinux;9;amd64;default;20261205_23:08;/images/almalinux/9/amd64/default/20261205_23:08/
alpine;3.20;amd64;default;20261205_13:00;/images/alpine/3.20/amd64/default/20261205_13:00/
alpine;3.20;arm64;default;20261205_13:01;/images/alpine/3.20/arm64/default/20261205_13:01/
debian;bookworm;amd64;cloud;20261205_05:24;/images/debian/bookworm/amd64/cloud/20261205_05:24/
debian;bookworm;amd64;default;20261204_05:24;/images/debian/bookworm/amd64/default/20261204_05:24/
debian;bookworm;amd64;default;20261205_05:24;/images/debian/bookworm/amd64/default/20261205_05:24/
debian;bookworm;amd64;default;20261203_05:24;/images/debian/bookworm/amd64/default/20261203_05:24/
`

func base(t testing.TB) *url.URL {
	u, err := indexfile.Base("https://images.example/")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestParseRealisticIndex(t *testing.T) {
	l, err := lxcindex.Parse([]byte(sample), base(t), lxcindex.Options{Arches: []string{"x86_64"}})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Name)
	}
	if got := strings.Join(names, " "); got != "almalinux_9_amd64_default alpine_3.20_amd64_default debian_bookworm_amd64_default" {
		t.Fatalf("names = %q", got)
	}
	d := l.Entries[2]
	want := "https://images.example/images/debian/bookworm/amd64/default/20261205_05:24/rootfs.tar.xz"
	if d.Build != "20261205_05:24" || d.URL != want || d.SignatureURL != want+".asc" || d.SHA256 != "" || d.Unverified == "" {
		t.Fatalf("debian = %+v", d)
	}
}

func TestHostileLines(t *testing.T) {
	for _, line := range []string{
		"debian;bookworm;amd64;default;20261205;/images/../../etc/",
		"debian;bookworm;amd64;default;20261205;http://evil.example/x/",
		"debian;bookworm;amd64;default;20261205;//evil.example/x/",
		"debian;bookworm;amd64;default;2026/1205;/images/x/",
		"debian;bookworm;amd64;default;20261205",
		"debian;bookworm;amd64;default;20261205;/a;extra",
		"../debian;bookworm;amd64;default;20261205;/images/x/",
		"debian;book worm;amd64;default;20261205;/images/x/",
		"debian;bookworm;amd64;default;;/images/x/",
		"debian;bookworm;amd64;default;20261205;/images/%2e%2e/",
	} {
		l, err := lxcindex.Parse([]byte(line+"\n"), base(t), lxcindex.Options{})
		if err != nil {
			t.Fatalf("%q: %v", line, err)
		}
		if len(l.Entries) != 0 || len(l.Skipped) != 1 || l.Skipped[0].Line != 1 {
			t.Errorf("%q: entries %+v skipped %+v", line, l.Entries, l.Skipped)
		}
	}
	long := strings.Repeat("a", lxcindex.MaxLine+10)
	if _, err := lxcindex.Parse([]byte(long), base(t), lxcindex.Options{}); err == nil || !strings.Contains(err.Error(), "index-system") {
		t.Errorf("an over-long line: err = %v", err)
	}
}

func TestParseSums(t *testing.T) {
	h := strings.Repeat("ab", 32)
	sums, err := lxcindex.ParseSums([]byte(h+"  rootfs.tar.xz\n"+strings.Repeat("cd", 32)+" *meta.tar.xz\r\n\n"), "SHA256SUMS")
	if err != nil || sums["rootfs.tar.xz"] != h || len(sums) != 2 {
		t.Fatalf("sums = %v, %v", sums, err)
	}
	for _, bad := range []string{"hello\n", h + "  rootfs.tar.xz\n" + strings.Repeat("cd", 32) + "  rootfs.tar.xz\n", h + "  ../rootfs.tar.xz\n", "abcd  x\n"} {
		if _, err := lxcindex.ParseSums([]byte(bad), "SHA256SUMS"); err == nil || !strings.Contains(err.Error(), "SHA256SUMS") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}

func TestFetchWithSumsAndSignatures(t *testing.T) {
	cur := marketfake.BusyboxTarXz(t, "debian", "LXC-NEW")
	old := marketfake.BusyboxTarXz(t, "debian", "LXC-OLD")
	fake := marketfake.NewLinuxContainers(t,
		marketfake.LXCImage{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Build: "20261205_05:24", Rootfs: cur},
		marketfake.LXCImage{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Build: "20261204_05:24", Rootfs: old},
		marketfake.LXCImage{Dist: "alpine", Release: "3.20", Arch: "arm64", Variant: "default", Build: "20261205_13:00", Rootfs: old},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	l, err := lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{Arches: []string{"amd64"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 1 || len(l.Skipped) != 0 {
		t.Fatalf("listing = %+v", l)
	}
	e := l.Entries[0]
	sum := sha256.Sum256(cur)
	if e.SHA256 != hex.EncodeToString(sum[:]) || e.Unverified != "" || e.URL != fake.RootfsURL(marketfake.LXCImage{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "default", Build: "20261205_05:24"}) {
		t.Fatalf("entry = %+v", e)
	}

	// With the keyring, SHA256SUMS is verified against SHA256SUMS.asc.
	keyring, err := pgpverify.ReadKeyring(fake.Signer.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{Arches: []string{"amd64"}, Keyring: keyring})
	if err != nil || len(signed.Entries) != 1 || signed.Entries[0].SHA256 != e.SHA256 {
		t.Fatalf("with the keyring: %+v, %v", signed, err)
	}
	stranger, err := pgpverify.ReadKeyring(marketfake.NewSigner(t, "Stranger").PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	// An index signed by a key outside the keyring fails the listing.
	if refused, err := lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{Arches: []string{"amd64"}, Keyring: stranger}); err == nil ||
		!strings.Contains(err.Error(), "index-system.asc") {
		t.Fatalf("index signed by a key outside the keyring: %+v, %v", refused, err)
	}

	// The detached signature verifies the rootfs as served, and a tampered one fails.
	sig := get(t, e.SignatureURL)
	if _, err := keyring.Detached(bytes.NewReader(get(t, e.URL)), sig); err != nil {
		t.Fatalf("signature of the served rootfs: %v", err)
	}
	fake.Tamper(t, "debian:bookworm:amd64:default")
	if _, err := keyring.Detached(bytes.NewReader(get(t, e.URL)), sig); err == nil {
		t.Fatal("a tampered rootfs verified")
	}

	// A build whose SHA256SUMS.asc does not verify is skipped, naming it.
	fake.TamperSums(t, "debian:bookworm:amd64:default")
	refused, err := lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{Arches: []string{"amd64"}, Keyring: keyring})
	if err != nil || len(refused.Entries) != 0 || len(refused.Skipped) != 1 || !strings.Contains(refused.Skipped[0].Reason, "SHA256SUMS.asc") {
		t.Fatalf("sums whose signature does not verify: %+v, %v", refused, err)
	}

	fake.RemoveSums()
	l, err = lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{})
	if err != nil || len(l.Entries) != 2 {
		t.Fatalf("without sums: %+v, %v", l, err)
	}
	for _, e := range l.Entries {
		if e.SHA256 != "" || !strings.Contains(e.Unverified, "SHA256SUMS") {
			t.Errorf("entry without sums must say it is unverified: %+v", e)
		}
	}
	fake.Fail(true)
	if _, err := lxcindex.Fetch(ctx, client, fake.URL, lxcindex.Options{}); err == nil || !strings.Contains(err.Error(), "500") {
		t.Errorf("failed listing: err = %v", err)
	}
}

func TestFetchSkipsBadSums(t *testing.T) {
	raw := marketfake.NewRaw(t, map[string][]byte{
		"meta/1.0/index-system": []byte("a;1;amd64;default;b1;/images/a/\nb;1;amd64;default;b1;/images/b/\n"),
		"images/a/SHA256SUMS":   []byte("not a sums file\n"),
		"images/b/SHA256SUMS":   []byte(strings.Repeat("ab", 32) + "  meta.tar.xz\n"),
	}, nil)
	l, err := lxcindex.Fetch(context.Background(), http.DefaultClient, raw.URL, lxcindex.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 0 || len(l.Skipped) != 2 || !strings.Contains(l.Skipped[0].Reason, "line 1") ||
		!strings.Contains(l.Skipped[1].Reason, "rootfs.tar.xz: not listed") {
		t.Fatalf("listing = %+v", l)
	}
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return b
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("a;b;c;d;e;/../x\n;;;;;\n"))
	b := base(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := lxcindex.Parse(data, b, lxcindex.Options{Variant: "default"})
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			if !strings.HasPrefix(e.URL, "https://images.example/") || strings.Contains(e.URL, "/../") || e.SHA256 != "" {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}

func FuzzParseSums(f *testing.F) {
	f.Add([]byte(strings.Repeat("ab", 32) + "  rootfs.tar.xz\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		sums, err := lxcindex.ParseSums(data, "SHA256SUMS")
		if err != nil {
			return
		}
		for name, s := range sums {
			if strings.Contains(name, "/") || len(s) != 64 {
				t.Fatalf("%q → %q", name, s)
			}
		}
	})
}
