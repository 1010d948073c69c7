package aplinfo_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/services/market-lxc/aplinfo"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

func indexURL(t testing.TB) *url.URL {
	u, err := url.Parse("https://releases.example/pve/aplinfo.dat")
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func sample(t testing.TB) []byte {
	b, err := os.ReadFile("testdata/aplinfo.dat")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseRealisticIndex(t *testing.T) {
	l, err := aplinfo.Parse(sample(t), indexURL(t), aplinfo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range l.Entries {
		names = append(names, e.Name+"="+e.File.Version+"-"+e.File.Revision)
	}
	if got := strings.Join(names, " "); got != "core=18.0-2 domain-controller=18.0-1 wordpress=18.1-1" {
		t.Fatalf("entries = %q", got)
	}
	if len(l.Skipped) != 1 || l.Skipped[0].Package != "debian-12-standard" || !strings.Contains(l.Skipped[0].Reason, "turnkey") {
		t.Errorf("skipped = %+v (Proxmox's own templates are not TurnKey file names)", l.Skipped)
	}
	dc := l.Entries[1]
	wantURL := "http://mirror.turnkeylinux.org/turnkeylinux/images/proxmox/debian-12-turnkey-domain-controller_18.0-1_amd64.tar.gz"
	if dc.URL != wantURL || dc.HashURL != wantURL+".hash" || dc.FileName != "debian-12-turnkey-domain-controller_18.0-1_amd64.tar.gz" {
		t.Errorf("urls = %s %s", dc.URL, dc.HashURL)
	}
	r := dc.Record
	if r.Package != "turnkey-domain-controller" || r.Headline != "TurnKey Domain Controller" || r.OS != "debian-12" ||
		r.Description != "The domain-controller appliance.\n.\nSecond paragraph." || len(r.SHA512) != 128 ||
		r.Fields["manageurl"] != "https://__IPADDRESS__/" || r.Infopage != "https://www.turnkeylinux.org/domain-controller" {
		t.Errorf("record = %+v", r)
	}
	arm, err := aplinfo.Parse(sample(t), indexURL(t), aplinfo.Options{Arch: "arm64"})
	if err != nil || len(arm.Entries) != 1 || arm.Entries[0].Name != "core" {
		t.Errorf("arm64 = %+v, %v", arm, err)
	}
}

func TestParseFileName(t *testing.T) {
	fn, err := aplinfo.ParseFileName("debian-12-turnkey-domain-controller_18.0-1_amd64.tar.gz")
	if err != nil || fn != (aplinfo.FileName{Debian: 12, App: "domain-controller", Version: "18.0", Revision: "1", Arch: "amd64"}) {
		t.Fatalf("= %+v, %v", fn, err)
	}
	for _, bad := range []string{"debian-12-turnkey-_18.0-1_amd64.tar.gz", "debian-12-turnkey-a_18.0_amd64.tar.gz",
		"debian-12-turnkey-A_18.0-1_amd64.tar.gz", "debian-12-turnkey-a--b_18.0-1_amd64.tar.gz", "debian-12-turnkey-a_18.0-1_amd64.tar.xz",
		"../debian-12-turnkey-a_18.0-1_amd64.tar.gz", "debian-12-turnkey-a_18.0-1_amd64.tar.gz/x", "debian-x-turnkey-a_1-1_amd64.tar.gz"} {
		if _, err := aplinfo.ParseFileName(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestHostileRecords(t *testing.T) {
	rec := func(loc string) string {
		return "Package: turnkey-x\nType: lxc\nArchitecture: amd64\nLocation: " + loc + "\n"
	}
	for name, c := range map[string]struct{ doc, reason string }{
		"dotdot":         {rec("../../debian-12-turnkey-x_1.0-1_amd64.tar.gz"), "escapes"},
		"dotdot in URL":  {rec("http://m.example/a/../debian-12-turnkey-x_1.0-1_amd64.tar.gz"), "escapes"},
		"file scheme":    {rec("file:///debian-12-turnkey-x_1.0-1_amd64.tar.gz"), "http(s)"},
		"user info":      {rec("http://u:p@m.example/debian-12-turnkey-x_1.0-1_amd64.tar.gz"), "user info"},
		"query":          {rec("http://m.example/debian-12-turnkey-x_1.0-1_amd64.tar.gz?x=1"), "query"},
		"no Location":    {"Package: turnkey-x\nType: lxc\nArchitecture: amd64\n", "no Location"},
		"arch differs":   {rec("debian-12-turnkey-x_1.0-1_arm64.tar.gz"), "differs"},
		"bad sha512":     {rec("debian-12-turnkey-x_1.0-1_amd64.tar.gz") + "sha512sum: abc\n", "sha512sum"},
		"wrong app name": {rec("debian-12-turnkey-x_1.0-1_amd64.tar.gz.hash"), "file name"},
	} {
		l, err := aplinfo.Parse([]byte(c.doc), indexURL(t), aplinfo.Options{})
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if len(l.Entries) != 0 || len(l.Skipped) != 1 || !strings.Contains(l.Skipped[0].Reason, c.reason) {
			t.Errorf("%s: entries %+v skipped %+v, want a reason with %q", name, l.Entries, l.Skipped, c.reason)
		}
	}
	for name, doc := range map[string]string{
		"orphan continuation": " continued\nPackage: x\n",
		"not a field":         "Package: x\nthis is not a field\n",
		"repeated field":      "Package: x\nPackage: y\n",
		"key with a space":    "Pack age: x\n",
		"huge line":           "Description: " + strings.Repeat("a", aplinfo.MaxLine) + "\n",
		"too many fields":     strings.Repeat("X", 0) + fields(aplinfo.MaxFields+1),
	} {
		if _, err := aplinfo.Parse([]byte(doc), indexURL(t), aplinfo.Options{}); err == nil || !strings.Contains(err.Error(), "aplinfo.dat") {
			t.Errorf("%s: err = %v, want an error naming aplinfo.dat", name, err)
		}
	}
	// A relative Location (Proxmox's style) resolves against the index.
	l, err := aplinfo.Parse([]byte(rec("images/debian-12-turnkey-x_1.0-1_amd64.tar.gz")), indexURL(t), aplinfo.Options{})
	if err != nil || len(l.Entries) != 1 || l.Entries[0].URL != "https://releases.example/pve/images/debian-12-turnkey-x_1.0-1_amd64.tar.gz" {
		t.Errorf("relative Location: %+v, %v", l, err)
	}
}

func fields(n int) string {
	var b strings.Builder
	for i := range n {
		b.WriteString("F" + strings.Repeat("x", i) + ": v\n")
	}
	return b.String()
}

func TestFetchAndVerifyHashes(t *testing.T) {
	dc := marketfake.BusyboxTarGz(t, "turnkey", "TKL-DC")
	core := marketfake.BusyboxTarGz(t, "turnkey", "TKL-CORE")
	fake := marketfake.NewTurnKey(t,
		marketfake.TurnKeyApp{App: "domain-controller", Debian: 12, Version: "18.0", Revision: 1, Arch: "amd64", Rootfs: dc},
		marketfake.TurnKeyApp{App: "core", Debian: 12, Version: "18.0", Revision: 1, Arch: "amd64", Rootfs: core},
	)
	keyring, err := pgpverify.ReadKeyring(fake.Signer.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	l, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 2 || l.Entries[1].Name != "domain-controller" || l.Entries[1].URL != fake.TarballURL(t, "domain-controller") {
		t.Fatalf("listing = %+v", l)
	}
	e := l.Entries[1]
	sums, err := aplinfo.FetchHash(ctx, client, keyring, e)
	want := sha256.Sum256(dc)
	if err != nil || sums.SHA256 != hex.EncodeToString(want[:]) || sums.SHA512 != e.Record.SHA512 || sums.Signer != keyring.Fingerprints()[0] {
		t.Fatalf("sums = %+v, %v", sums, err)
	}

	for p, reason := range map[marketfake.HashProblem]string{
		marketfake.HashBadSignature: "bad signature",
		marketfake.HashUnsigned:     "not a clearsigned document",
		marketfake.HashOtherKey:     "not in the configured keyring",
		marketfake.HashWrongFile:    "no sha256 and sha512 lines for debian-12-turnkey-domain-controller",
		marketfake.HashMissing:      "404",
	} {
		fake.SetHash(t, "domain-controller", p)
		_, err := aplinfo.FetchHash(ctx, client, keyring, e)
		if err == nil || !strings.Contains(err.Error(), reason) || !strings.Contains(err.Error(), "app domain-controller") {
			t.Errorf("hash problem %d: err = %v, want the app and %q", p, err, reason)
		}
	}
	fake.SetHash(t, "domain-controller", marketfake.HashOK)
	e.Record.SHA512 = strings.Repeat("0", 128)
	if _, err := aplinfo.FetchHash(ctx, client, keyring, e); err == nil || !strings.Contains(err.Error(), "aplinfo.dat says") {
		t.Errorf("index sha512 differing from the signed one: err = %v", err)
	}

	signed, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{IndexKeyring: keyring})
	if err != nil || len(signed.Entries) != 2 {
		t.Fatalf("with the index signature checked: %+v, %v", signed, err)
	}
	other, err := pgpverify.ReadKeyring(marketfake.NewSigner(t, "Other").PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{IndexKeyring: other}); err == nil || !strings.Contains(err.Error(), "aplinfo.dat.asc") {
		t.Errorf("index signed by a key outside the keyring: err = %v", err)
	}

	fake.Drop("core")
	if l, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{}); err != nil || len(l.Entries) != 1 {
		t.Errorf("dropped: %+v, %v", l, err)
	}
	fake.Empty(true)
	if l, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{}); err != nil || len(l.Entries) != 0 {
		t.Errorf("empty: %+v, %v", l, err)
	}
	fake.Fail(true)
	if _, err := aplinfo.Fetch(ctx, client, fake.IndexURL, aplinfo.Options{}); err == nil || !strings.Contains(err.Error(), "aplinfo.dat: HTTP 500") {
		t.Errorf("failed listing: err = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(sample(f))
	f.Add([]byte("Package: a\nType: lxc\nArchitecture: amd64\nLocation: ../debian-12-turnkey-a_1-1_amd64.tar.gz\n"))
	u := indexURL(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := aplinfo.Parse(data, u, aplinfo.Options{})
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			pu, err := url.Parse(e.URL)
			if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || strings.Contains(pu.Path, "/../") || pu.User != nil {
				t.Fatalf("entry URL %q", e.URL)
			}
			if fn, err := aplinfo.ParseFileName(e.FileName); err != nil || fn.App != e.Name {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}

func TestVerifyHashReadsOnlyTheSignedText(t *testing.T) {
	s := marketfake.NewSigner(t, "TurnKey Linux Release Key")
	keyring, err := pgpverify.ReadKeyring(s.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	file := "debian-12-turnkey-core_18.0-1_amd64.tar.gz"
	s256, s512 := strings.Repeat("a1", 32), strings.Repeat("b2", 64)
	lines := "    $ sha256sum " + file + "\n      " + s256 + "  " + file + "\n\n    $ sha512sum " + file + "\n      " + s512 + "  " + file + "\n"
	sums, err := aplinfo.VerifyHash(keyring, s.Clearsign(t, []byte(lines)), file)
	if err != nil || sums.SHA256 != s256 || sums.SHA512 != s512 {
		t.Fatalf("sums = %+v, %v", sums, err)
	}
	// Sums outside the signed block are never read.
	outside := append([]byte(lines), s.Clearsign(t, []byte("nothing here\n"))...)
	if _, err := aplinfo.VerifyHash(keyring, outside, file); err == nil {
		t.Error("sums written outside the signed block were trusted")
	}
	// Two different sums for the file in the signed text.
	twice := lines + "      " + strings.Repeat("c3", 32) + "  " + file + "\n"
	if _, err := aplinfo.VerifyHash(keyring, s.Clearsign(t, []byte(twice)), file); err == nil || !strings.Contains(err.Error(), "two different sha256") {
		t.Errorf("two sums: err = %v", err)
	}
	// Only a sha256 line.
	if _, err := aplinfo.VerifyHash(keyring, s.Clearsign(t, []byte("      "+s256+"  "+file+"\n")), file); err == nil {
		t.Error("a hash without its sha512 line was accepted")
	}
}

func TestFetchRefusesAHugeIndex(t *testing.T) {
	raw := marketfake.NewRawChunked(t, map[string]int64{"pve/aplinfo.dat": aplinfo.MaxIndex + 1})
	_, err := aplinfo.Fetch(context.Background(), http.DefaultClient, raw.URL+"pve/aplinfo.dat", aplinfo.Options{})
	if err == nil || !strings.Contains(err.Error(), "larger than its cap") {
		t.Fatalf("err = %v", err)
	}
	for _, bad := range []string{"file:///aplinfo.dat", "http://u:p@x/aplinfo.dat", "aplinfo.dat"} {
		if _, err := aplinfo.Fetch(context.Background(), http.DefaultClient, bad, aplinfo.Options{}); err == nil {
			t.Errorf("index URL %q accepted", bad)
		}
	}
}

func FuzzVerifyHash(f *testing.F) {
	s := marketfake.NewSigner(f, "TurnKey Linux Release Key")
	keyring, err := pgpverify.ReadKeyring(s.PublicKey(f))
	if err != nil {
		f.Fatal(err)
	}
	file := "debian-12-turnkey-core_18.0-1_amd64.tar.gz"
	f.Add(s.Clearsign(f, []byte("      "+strings.Repeat("a1", 32)+"  "+file+"\n      "+strings.Repeat("b2", 64)+"  "+file+"\n")))
	f.Fuzz(func(t *testing.T, doc []byte) {
		sums, err := aplinfo.VerifyHash(keyring, doc, file)
		if err == nil && (len(sums.SHA256) != 64 || len(sums.SHA512) != 128 || !strings.Contains(string(doc), sums.SHA256)) {
			t.Fatalf("sums %+v", sums)
		}
	})
}
