package indexfile_test

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
)

func TestResolveStaysUnderTheEndpoint(t *testing.T) {
	base, err := indexfile.Base("https://images.example/mirror")
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"images/debian/bookworm/amd64/default/20261205_05:24/rootfs.tar.xz": "https://images.example/mirror/images/debian/bookworm/amd64/default/20261205_05:24/rootfs.tar.xz",
		"/images/x/": "", // trailing slash: empty segment
		"/images/a":  "https://images.example/mirror/images/a",
		"a b":        "https://images.example/mirror/a%20b",
		"a:b":        "https://images.example/mirror/a:b",
	}
	for p, want := range good {
		got, err := indexfile.Resolve(base, p)
		if want == "" {
			if err == nil {
				t.Errorf("Resolve(%q) = %q, want an error", p, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("Resolve(%q) = %q, %v; want %q", p, got, err, want)
		}
	}
	for _, p := range []string{"", "..", "../x", "a/../../x", "a/./b", "//evil/x", "http://evil/x", "https:/x/../y",
		"a\\..\\b", "%2e%2e/x", "a?b", "a#b", "a\x00b", "a\nb", "javascript://x", strings.Repeat("a/", 600),
		"a//b", "file:///etc/passwd"} {
		if got, err := indexfile.Resolve(base, p); err == nil {
			t.Errorf("Resolve(%q) = %q, want an error", p, got)
		}
	}
}

func TestBase(t *testing.T) {
	b, err := indexfile.Base("http://127.0.0.1:8080")
	if err != nil || b.String() != "http://127.0.0.1:8080/" {
		t.Errorf("Base = %v, %v", b, err)
	}
	for _, bad := range []string{"", "images.example", "ftp://x/", "http://u@x/", "http://x/?q", "http://x/#f", "http://%zz/"} {
		if _, err := indexfile.Base(bad); err == nil {
			t.Errorf("Base(%q) accepted", bad)
		}
	}
}

func TestHexAndSumLine(t *testing.T) {
	h := strings.Repeat("Ab", 32)
	if got, err := indexfile.Hex(h, 32); err != nil || got != strings.ToLower(h) {
		t.Errorf("Hex = %q, %v", got, err)
	}
	for _, bad := range []string{"", "ab", strings.Repeat("g", 64), strings.Repeat("a", 63) + " ", strings.Repeat("a", 128)} {
		if _, err := indexfile.Hex(bad, 32); err == nil {
			t.Errorf("Hex(%q) accepted", bad)
		}
	}
	sum, name, ok := indexfile.SumLine("      "+h+"  rootfs.tar.xz", 32)
	if !ok || name != "rootfs.tar.xz" || sum != strings.ToLower(h) {
		t.Errorf("SumLine = %q %q %v", sum, name, ok)
	}
	if _, name, ok := indexfile.SumLine(h+" *rootfs.tar.xz", 32); !ok || name != "rootfs.tar.xz" {
		t.Errorf("binary-mode line: %q %v", name, ok)
	}
	for _, bad := range []string{h + "  ../x", h + "  a/b", h, h + "  a b", "$ sha256sum x", h + "  ..", h + "  *"} {
		if _, _, ok := indexfile.SumLine(bad, 32); ok {
			t.Errorf("SumLine(%q) accepted", bad)
		}
	}
}

func TestGetCapsStatusAndHeaders(t *testing.T) {
	ctx := context.Background()
	raw := marketfake.NewRaw(t, map[string][]byte{"small": []byte("hello")}, map[string]int64{"big": 1 << 20})
	b, err := indexfile.Get(ctx, http.DefaultClient, raw.URL+"small", 5, http.Header{"User-Agent": {"OpenNebula 6.10.0"}})
	if err != nil || string(b) != "hello" {
		t.Fatalf("Get = %q, %v", b, err)
	}
	if reqs := raw.Requests(); reqs[len(reqs)-1].UserAgent != "OpenNebula 6.10.0" {
		t.Errorf("User-Agent not sent: %+v", reqs)
	}
	if _, err := indexfile.Get(ctx, http.DefaultClient, raw.URL+"small", 4, nil); !errors.Is(err, indexfile.ErrTooLarge) {
		t.Errorf("5 bytes under a cap of 4: err = %v", err)
	}
	if _, err := indexfile.Get(ctx, http.DefaultClient, raw.URL+"big", 1000, nil); !errors.Is(err, indexfile.ErrTooLarge) {
		t.Errorf("declared length over the cap: err = %v", err)
	}
	chunked := marketfake.NewRawChunked(t, map[string]int64{"big": 1 << 20})
	_, err = indexfile.Get(ctx, http.DefaultClient, chunked.URL+"big", 1000, nil)
	if !errors.Is(err, indexfile.ErrTooLarge) || !strings.Contains(err.Error(), chunked.URL+"big") {
		t.Errorf("undeclared length over the cap: err = %v", err)
	}
	_, err = indexfile.Get(ctx, http.DefaultClient, raw.URL+"missing", 10, nil)
	var se *indexfile.StatusError
	if !errors.As(err, &se) || se.Status != 404 {
		t.Errorf("missing: err = %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := indexfile.Get(cctx, http.DefaultClient, raw.URL+"small", 10, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: err = %v", err)
	}
}

func FuzzResolve(f *testing.F) {
	for _, s := range []string{"images/a/b", "../x", "/a", "http://x/", "a/./b", "%2e%2e"} {
		f.Add(s)
	}
	base, _ := indexfile.Base("https://images.example/root/")
	f.Fuzz(func(t *testing.T, p string) {
		got, err := indexfile.Resolve(base, p)
		if err != nil {
			return
		}
		u, err := url.Parse(got)
		if err != nil {
			t.Fatalf("Resolve(%q) = %q does not parse: %v", p, got, err)
		}
		if u.Host != "images.example" || u.Scheme != "https" || !strings.HasPrefix(u.Path, "/root/") || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("Resolve(%q) = %q leaves the endpoint", p, got)
		}
		for _, seg := range strings.Split(u.Path, "/") {
			if seg == ".." || seg == "." {
				t.Fatalf("Resolve(%q) = %q has a dot segment", p, got)
			}
		}
	})
}
