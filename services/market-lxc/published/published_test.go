package published

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"path"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func testApp(t *testing.T, name string, data []byte) App {
	t.Helper()
	a, err := Prepare(App{
		Name: name, Version: "1.0", Format: "qcow2", Size: int64(len(data)), SHA256: sum(data),
		Description: "a test app\non two lines", Publisher: "Slipway tests",
		VMTemplate: "CPU = 1\nMEMORY = 256\nDISK = [ DEV_PREFIX = \"vd\" ]\n",
	}, time.Unix(1700000000, 0))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestValidateNameRefusesBreakouts tries names that would leave an app's
// directory, need escaping, or hide control characters.
func TestValidateNameRefusesBreakouts(t *testing.T) {
	bad := []string{
		"", ".", "..", "../x", "a/../b", "a/b", "/abs", "a\\b", "..\\x", "a..b", "x..",
		".hidden", "-flag", "_x", "a b", "a\x00b", "a\nb", "a\tb", "a\x7fb", "a%2f..",
		"a?b", "a#b", "é", "a\u202eb", "a:b", "~root", strings.Repeat("a", 129),
	}
	for _, n := range bad {
		err := ValidateName(n)
		if err == nil {
			t.Errorf("ValidateName(%q) accepted", n)
			continue
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("ValidateName(%q): %v does not wrap ErrInvalid", n, err)
		}
	}
	for _, n := range []string{"a", "Ubuntu-24.04", "alpine_3.20", "x.y-z_1", strings.Repeat("a", 128)} {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q): %v", n, err)
		}
	}
}

// FuzzValidateName checks that every accepted name's paths stay one
// directory below apps/ of the base, however the name is made.
func FuzzValidateName(f *testing.F) {
	for _, s := range []string{"a", "..", "a/..", "a..", "a.b", "%2e%2e", "a\x00", "A-1_b.c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if ValidateName(name) != nil {
			return
		}
		base := "/srv/market"
		for _, rel := range []string{AppDir(name), MetaPath(name), BlobPath(name, "raw")} {
			p := filepath.Join(base, rel)
			if filepath.Dir(filepath.Dir(p)) != filepath.Join(base, "apps") && filepath.Dir(p) != filepath.Join(base, "apps") {
				t.Fatalf("name %q: %s leaves %s/apps/<name>", name, p, base)
			}
			if path.Clean(rel) != strings.TrimSuffix(rel, "/") {
				t.Fatalf("name %q: %s is not clean", name, rel)
			}
		}
		if filepath.Base(filepath.Join(base, AppDir(name))) != name {
			t.Fatalf("name %q is not one path segment", name)
		}
	})
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	ix := NewIndex()
	for _, n := range []string{"zeta", "alpha", "mid"} {
		if err := ix.Add(testApp(t, n, []byte(n))); err != nil {
			t.Fatal(err)
		}
	}
	if err := ix.Add(testApp(t, "mid", nil)); !errors.Is(err, ErrExists) {
		t.Fatalf("second add of mid: %v, want ErrExists", err)
	}
	b, err := ix.Encode()
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeIndex(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range got.Apps {
		names = append(names, a.Name)
	}
	if strings.Join(names, ",") != "alpha,mid,zeta" {
		t.Fatalf("apps %v, want sorted alpha,mid,zeta", names)
	}
	if a, _ := got.Find("mid"); a.Blob != "apps/mid/disk.qcow2" || a.SHA256 != sum([]byte("mid")) || !a.Created.Equal(time.Unix(1700000000, 0)) {
		t.Fatalf("mid read back as %+v", a)
	}
	if !got.Remove("mid") || got.Remove("mid") {
		t.Fatal("Remove: want true once, then false")
	}
	meta, err := EncodeMeta(testApp(t, "one", []byte("x")))
	if err != nil {
		t.Fatal(err)
	}
	a, err := DecodeMeta(bytes.NewReader(meta))
	if err != nil || a.Name != "one" || a.VMTemplate == "" {
		t.Fatalf("DecodeMeta: %+v, %v", a, err)
	}
}

// TestDecodeIndexRefusesHostile feeds documents a hostile server could
// serve and checks each is refused, naming what is wrong.
func TestDecodeIndexRefusesHostile(t *testing.T) {
	good := `{"name":"a","version":"1","format":"raw","size":1,"sha256":"` + strings.Repeat("0", 64) + `","created":"2026-01-01T00:00:00Z","blob":"apps/a/disk.raw"}`
	app := func(field, value string) string {
		// Replace one field of good by value (raw JSON).
		var out []string
		for kv := range strings.SplitSeq(strings.Trim(good, "{}"), ",") {
			if strings.HasPrefix(kv, `"`+field+`":`) {
				kv = `"` + field + `":` + value
			}
			out = append(out, kv)
		}
		return "{" + strings.Join(out, ",") + "}"
	}
	index := func(apps ...string) string {
		return `{"format_version":1,"apps":[` + strings.Join(apps, ",") + `]}`
	}
	cases := []struct{ name, doc, want string }{
		{"escaping blob path", index(app("blob", `"../../../etc/shadow"`)), `blob "../../../etc/shadow": must be "apps/a/disk.raw"`},
		{"blob on another host", index(app("blob", `"https://evil.example/x"`)), "must be"},
		{"absolute blob path", index(app("blob", `"/etc/passwd"`)), "must be"},
		{"name with ..", index(app("name", `".."`)), `app name "..": must start with a letter`},
		{"name with a slash", index(app("name", `"a/../../b"`)), "must not contain"},
		{"name with a control character", index(app("name", `"a\u0000"`)), "not allowed"},
		{"size of the wrong type", index(app("size", `"big"`)), "size"},
		{"negative size", index(app("size", `-5`)), "negative"},
		{"apps of the wrong type", `{"format_version":1,"apps":{"a":1}}`, "apps"},
		{"short sha256", index(app("sha256", `"abc"`)), "64 lower-case hex"},
		{"unknown format", index(app("format", `"vmdk; rm -rf"`)), "want one of raw, qcow2"},
		{"unknown version", `{"format_version":2,"apps":[]}`, "format_version 2"},
		{"repeated app", index(good, good), "repeats or is out of order"},
		{"bad template", index(app("name", `"a"`)[:len(good)-1] + `,"vm_template":"CPU = [ unclosed"}`), "vm_template"},
		{"control character in description", index(app("name", `"a"`)[:len(good)-1] + `,"description":"x\u001b[31m"}`), "description: control character"},
		{"trailing data", index(good) + `{}`, "data after"},
		{"not JSON", `<html>`, "index"},
		{"huge", `{"format_version":1,"apps":[],"pad":"` + strings.Repeat("x", MaxIndexBytes) + `"}`, "larger than"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := DecodeIndex(strings.NewReader(c.doc))
			if err == nil {
				t.Fatalf("accepted %.200s", c.doc)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
	if _, err := DecodeIndex(strings.NewReader(index(good))); err != nil {
		t.Fatalf("the unmodified document is refused: %v", err)
	}
}

func TestResolveStaysUnderBase(t *testing.T) {
	base, err := ParseBaseURL("https://market.example/pub/slipway")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := Resolve(base, BlobPath("a", "raw")); err != nil || got != "https://market.example/pub/slipway/apps/a/disk.raw" {
		t.Fatalf("Resolve: %q, %v", got, err)
	}
	for _, rel := range []string{"../x", "apps/../../x", "//evil.example/x", "https://evil.example/x", "/x", "apps/%2e%2e/%2e%2e/x"} {
		if got, err := Resolve(base, rel); err == nil {
			t.Errorf("Resolve(%q) = %q, want a refusal", rel, got)
		}
	}
	for _, raw := range []string{"ftp://x/", "https://user:pw@x/", "https:///nohost", "https://x/?q=1", "https://x/#f", "file:///etc"} {
		if _, err := ParseBaseURL(raw); err == nil {
			t.Errorf("ParseBaseURL(%q) accepted", raw)
		}
	}
}

func TestVerifiedReader(t *testing.T) {
	data := []byte("the published bytes")
	a := testApp(t, "v", data)
	ctx := context.Background()
	if got, err := io.ReadAll(VerifiedReader(ctx, io.NopCloser(bytes.NewReader(data)), a)); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("intact blob: %q, %v", got, err)
	}
	tampered := bytes.ToUpper(data)
	for name, r := range map[string]io.Reader{
		"tampered": bytes.NewReader(tampered),
		"short":    bytes.NewReader(data[:5]),
		"long":     io.MultiReader(bytes.NewReader(data), strings.NewReader("more")),
	} {
		if _, err := io.ReadAll(VerifiedReader(ctx, io.NopCloser(r), a)); err == nil {
			t.Errorf("%s blob read without error", name)
		}
	}
	_, err := io.ReadAll(VerifiedReader(ctx, io.NopCloser(bytes.NewReader(tampered)), a))
	if err == nil || !strings.Contains(err.Error(), "expected "+a.SHA256+", got "+sum(tampered)) {
		t.Fatalf("tampered: %v, want both sums named", err)
	}
}

func TestQuotaUsage(t *testing.T) {
	u := QuotaUsage(3<<20+1, 10)
	if u != (Usage{UsedMB: 4, FreeMB: 6, TotalMB: 10}) {
		t.Fatalf("QuotaUsage: %+v", u)
	}
	if u := QuotaUsage(20<<20, 10); u.FreeMB != 0 {
		t.Fatalf("over quota: %+v, want FREE_MB 0", u)
	}
}
