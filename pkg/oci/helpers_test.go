package oci_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// loopback opens the test registries, which listen on loopback, as
// SLIPWAY_FETCH_ALLOW=127.0.0.0/8,::1/128 would.
var loopback = netguard.MustParse("127.0.0.0/8,::1/128")

// counter counts requests by a predicate; safe for concurrent use.
type counter struct {
	mu       sync.Mutex
	n        int
	inFlight int
	maxIn    int
}

func (c *counter) wrap(match func(*http.Request) bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !match(r) {
				next.ServeHTTP(w, r)
				return
			}
			c.mu.Lock()
			c.n++
			c.inFlight++
			c.maxIn = max(c.maxIn, c.inFlight)
			c.mu.Unlock()
			defer func() { c.mu.Lock(); c.inFlight--; c.mu.Unlock() }()
			next.ServeHTTP(w, r)
		})
	}
}

func (c *counter) count() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

func isBlobGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/sha256:")
}

func isManifestGet(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/manifests/")
}

// basicAuth demands user:pass on /v2/ the way distribution does: 401 with
// a Basic challenge and an UNAUTHORIZED error body.
func basicAuth(user, pass string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != pass {
				w.Header().Set("WWW-Authenticate", `Basic realm="slipway-test"`)
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusUnauthorized)
				fmt.Fprint(w, `{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":null}]}`)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

// writeDockerConfig writes a config.json with base64 "auth" entries.
func writeDockerConfig(t *testing.T, creds map[string]string) string {
	t.Helper()
	var entries []string
	for host, userpass := range creds {
		entries = append(entries, fmt.Sprintf(`%q:{"auth":%q}`, host, base64.StdEncoding.EncodeToString([]byte(userpass))))
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(`{"auths":{`+strings.Join(entries, ",")+`}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// entry is one tar entry of a test layer.
type entry struct {
	name     string
	typ      byte
	body     []byte
	file     string // content from this file instead of body
	link     string
	mode     int64
	uid, gid int
}

func dir(name string) entry { return entry{name: name, typ: tar.TypeDir, mode: 0o755} }
func file(name, body string) entry {
	return entry{name: name, typ: tar.TypeReg, body: []byte(body), mode: 0o644}
}
func symlink(name, to string) entry {
	return entry{name: name, typ: tar.TypeSymlink, link: to, mode: 0o777}
}

// layer builds a gzip layer from entries through a temp file, as real
// layers are built, never holding file content in memory.
func layer(t *testing.T, entries ...entry) v1.Layer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "layer.tar")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	tw := tar.NewWriter(f)
	for _, e := range entries {
		writeEntry(t, tw, e)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	l, err := tarball.LayerFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func writeEntry(t *testing.T, tw *tar.Writer, e entry) {
	t.Helper()
	h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Linkname: e.link, Uid: e.uid, Gid: e.gid}
	var r io.Reader = bytes.NewReader(e.body)
	h.Size = int64(len(e.body))
	if e.file != "" {
		f, err := os.Open(e.file)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, _ := f.Stat()
		h.Size, r = fi.Size(), f
	}
	if e.typ != tar.TypeReg {
		h.Size, r = 0, bytes.NewReader(nil)
	}
	if err := tw.WriteHeader(h); err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(tw, r); err != nil {
		t.Fatal(err)
	}
}

// image is FROM scratch with the given layers, for a platform.
func image(t *testing.T, platform string, layers ...v1.Layer) v1.Image {
	t.Helper()
	p, err := v1.ParsePlatform(platform)
	if err != nil {
		t.Fatal(err)
	}
	base, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{OS: p.OS, Architecture: p.Architecture, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"}, Config: v1.Config{Cmd: []string{"/bin/sh"}}})
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(base, layers...)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// busyboxImage is a real image: the static busybox and a shell link.
func busyboxImage(t *testing.T, platform string) v1.Image {
	t.Helper()
	return image(t, platform,
		layer(t, dir("bin/"), entry{name: "bin/busybox", typ: tar.TypeReg, file: "/bin/busybox", mode: 0o755}, symlink("bin/sh", "busybox")),
		layer(t, dir("etc/"), file("etc/os-release", "ID=busybox\nNAME=BusyBox\n"), file("etc/hostname", "slipway\n")))
}

func push(t *testing.T, ref string, img v1.Image, opts ...remote.Option) string {
	t.Helper()
	return testenv.Push(t, ref, img, opts...).String()
}

func pushIndex(t *testing.T, ref string, imgs map[string]v1.Image) string {
	t.Helper()
	idx := v1.ImageIndex(empty.Index)
	for _, platform := range sortedPlatforms(imgs) {
		p, _ := v1.ParsePlatform(platform)
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{Add: imgs[platform], Descriptor: v1.Descriptor{Platform: p}})
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.WriteIndex(r, idx); err != nil {
		t.Fatalf("push index %s: %v", ref, err)
	}
	d, _ := idx.Digest()
	return d.String()
}

func sortedPlatforms(m map[string]v1.Image) []string {
	return slices.Sorted(maps.Keys(m))
}

func digestOf(t *testing.T, img v1.Image) string {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d.String()
}

func basic(user, pass string) remote.Option {
	return remote.WithAuth(&authn.Basic{Username: user, Password: pass})
}

func mustContain(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", want)
	}
	t.Logf("error: %v", err)
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Fatalf("error %q does not contain %q", err, w)
		}
	}
}

// pullAll pulls and waits for every layer's download, for tests that want
// the whole image in the cache as Pull used to leave it.
func pullAll(t *testing.T, ctx context.Context, ref, cacheDir string, opts oci.Options) (oci.Image, error) {
	t.Helper()
	img, err := oci.Pull(ctx, ref, cacheDir, opts)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { img.Close() }) // before cacheDir's removal: cleanups run last first
	if err := img.Wait(); err != nil {
		return nil, err
	}
	return img, nil
}
