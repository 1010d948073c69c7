package httpmarket

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/published"
)

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// payload is n bytes that differ per seed.
func payload(seed string, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*31) ^ seed[i%len(seed)]
	}
	return b
}

func app(name string, data []byte) published.App {
	return published.App{
		Name: name, Version: "2.1", Format: "qcow2", Size: int64(len(data)), SHA256: sum(data),
		VirtualSize: 1 << 30, Description: "test app " + name, Publisher: "Slipway tests",
		VMTemplate: "CPU = 1\nMEMORY = 512\n",
	}
}

// market is a Publisher on a temporary PUBLIC_DIR served over real HTTP.
func market(t *testing.T, totalMB int64) (*Publisher, *httptest.Server) {
	t.Helper()
	p, err := NewPublisher(t.TempDir(), totalMB)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.FileServer(http.Dir(p.Dir())))
	t.Cleanup(srv.Close)
	return p, srv
}

func lister(t *testing.T, srv *httptest.Server) *Lister {
	t.Helper()
	l, err := NewLister(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestPublishListDownload(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	blobs := map[string][]byte{"alpine-3.20": payload("alpine", 3<<20+17), "debian-12": payload("debian", 70000)}
	for name, data := range blobs {
		a, err := p.Publish(ctx, app(name, data), bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		if a.Blob != "apps/"+name+"/disk.qcow2" || a.Created.IsZero() {
			t.Fatalf("published %+v", a)
		}
	}
	// A second lister, as another Slipway would, over HTTP only.
	entries, err := lister(t, srv).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Name != "alpine-3.20" || entries[1].Name != "debian-12" {
		t.Fatalf("listed %+v", entries)
	}
	for _, e := range entries {
		want := blobs[e.Name]
		if e.BlobURL != srv.URL+"/apps/"+e.Name+"/disk.qcow2" || e.SHA256 != sum(want) || e.Size != int64(len(want)) ||
			e.VMTemplate != "CPU = 1\nMEMORY = 512\n" || e.VirtualSize != 1<<30 || e.Version != "2.1" {
			t.Fatalf("entry %+v", e)
		}
		// A plain HTTP client downloads the blob URL.
		got := httpGet(t, srv.Client(), e.BlobURL)
		if !bytes.Equal(got, want) || sum(got) != e.SHA256 {
			t.Fatalf("%s: downloaded %d bytes (sha256 %s), want %d (%s)", e.Name, len(got), sum(got), len(want), e.SHA256)
		}
		rc, err := lister(t, srv).Open(ctx, e.App)
		if err != nil {
			t.Fatal(err)
		}
		got, err = io.ReadAll(rc)
		rc.Close()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("Open %s: %d bytes, %v", e.Name, len(got), err)
		}
		meta, err := published.DecodeMeta(bytes.NewReader(httpGet(t, srv.Client(), srv.URL+"/"+published.MetaPath(e.Name))))
		if err != nil || meta != e.App {
			t.Fatalf("metadata document of %s: %+v, %v; index has %+v", e.Name, meta, err, e.App)
		}
	}
	if _, err := p.Publish(ctx, app("debian-12", blobs["debian-12"]), bytes.NewReader(blobs["debian-12"])); !errors.Is(err, published.ErrExists) {
		t.Fatalf("republishing debian-12: %v, want ErrExists", err)
	}
	assertNoIncoming(t, p)
}

func httpGet(t *testing.T, c *http.Client, u string) []byte {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", u, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func assertNoIncoming(t *testing.T, p *Publisher) {
	t.Helper()
	left, _ := filepath.Glob(filepath.Join(p.Dir(), stateDir, "incoming-*"))
	if len(left) > 0 {
		t.Fatalf("temporary blobs left behind: %v", left)
	}
}

func TestWrongSHA256LeavesNothing(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	data := payload("x", 100000)
	wrong := app("bad", data)
	wrong.SHA256 = sum([]byte("something else"))
	_, err := p.Publish(ctx, wrong, bytes.NewReader(data))
	if err == nil || !strings.Contains(err.Error(), "expected "+wrong.SHA256+", got "+sum(data)) {
		t.Fatalf("publish with a wrong sha256: %v", err)
	}
	short := app("short", data)
	if _, err := p.Publish(ctx, short, bytes.NewReader(data[:500])); err == nil || !strings.Contains(err.Error(), "500 bytes, 100000 were expected") {
		t.Fatalf("publish of a short blob: %v", err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir(), "apps")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("apps/ exists after refused publishes: %v", err)
	}
	assertNoIncoming(t, p)
	if entries, err := lister(t, srv).List(ctx); err == nil {
		t.Fatalf("an index exists after refused publishes: %+v", entries)
	}
}

func TestDeleteRemovesFilesAndEntry(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	for _, n := range []string{"keep", "gone"} {
		data := payload(n, 5000)
		if _, err := p.Publish(ctx, app(n, data), bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := p.Delete(ctx, "gone"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p.Dir(), "apps", "gone")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("apps/gone after delete: %v", err)
	}
	entries, err := lister(t, srv).List(ctx)
	if err != nil || len(entries) != 1 || entries[0].Name != "keep" {
		t.Fatalf("after delete: %+v, %v", entries, err)
	}
	resp, err := srv.Client().Get(srv.URL + "/apps/gone/disk.qcow2")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Fatalf("deleted blob still served: %s", resp.Status)
	}
	if err := p.Delete(ctx, "gone"); err != nil {
		t.Fatalf("deleting again: %v", err)
	}
	if err := p.Delete(ctx, "../keep"); err == nil {
		t.Fatal("Delete accepted ../keep")
	}
	// The deleted name can be published again.
	data := payload("again", 10)
	if _, err := p.Publish(ctx, app("gone", data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentPublishesKeepEveryEntry(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	// Two Publishers on one directory stand for two processes: each has
	// its own lock file descriptor.
	other, err := NewPublisher(p.Dir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			pub := p
			if i%2 == 1 {
				pub = other
			}
			data := payload(strconv.Itoa(i), 20000+i)
			if _, err := pub.Publish(ctx, app(fmt.Sprintf("app-%02d", i), data), bytes.NewReader(data)); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	entries, err := lister(t, srv).List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != n {
		t.Fatalf("%d entries after %d concurrent publishes", len(entries), n)
	}
	for i, e := range entries {
		if e.Name != fmt.Sprintf("app-%02d", i) || e.Size != int64(20000+i) {
			t.Fatalf("entry %d: %+v", i, e)
		}
	}
}

// TestListerRefusesHostile serves index documents a hostile marketplace
// could, and a redirect off the marketplace's host.
func TestListerRefusesHostile(t *testing.T) {
	ctx := context.Background()
	entry := func(name, blob string) string {
		return fmt.Sprintf(`{"name":%q,"version":"1","format":"raw","size":3,"sha256":"%s","created":"2026-01-01T00:00:00Z","blob":%q}`,
			name, sum([]byte("abc")), blob)
	}
	index := func(apps ...string) string { return `{"format_version":1,"apps":[` + strings.Join(apps, ",") + `]}` }
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, index()) }))
	defer evil.Close()
	cases := []struct{ name, body, want string }{
		{"escaping blob path", index(entry("a", "../../secret")), `must be "apps/a/disk.raw"`},
		{"blob on another host", index(entry("a", "http://169.254.169.254/latest")), "must be"},
		{"name with ..", index(entry("..", "apps/../disk.raw")), `app name ".."`},
		{"name with a slash", index(entry("a/b", "apps/a/b/disk.raw")), `'/' is not allowed`},
		{"wrong types", `{"format_version":"1","apps":"all"}`, "format_version"},
		{"size of the wrong type", strings.Replace(index(entry("a", "apps/a/disk.raw")), `"size":3`, `"size":"3"`, 1), "size"},
		{"huge", `{"format_version":1,"apps":[],"x":"` + strings.Repeat("a", published.MaxIndexBytes) + `"}`, "larger than"},
		{"redirect to another host", "redirect", "outside BASE_URL"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.body == "redirect" {
					http.Redirect(w, r, evil.URL+"/index.json", http.StatusFound)
					return
				}
				io.WriteString(w, c.body)
			}))
			defer srv.Close()
			entries, err := lister(t, srv).List(ctx)
			if err == nil {
				t.Fatalf("listed %+v", entries)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q does not say %q", err, c.want)
			}
		})
	}
}

func TestOpenRefusesTamperedBlob(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	data := payload("t", 4096)
	a, err := p.Publish(ctx, app("t", data), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(data)
	tampered[100] ^= 1
	if err := os.WriteFile(filepath.Join(p.Dir(), "apps", "t", "disk.qcow2"), tampered, 0o644); err != nil {
		t.Fatal(err)
	}
	rc, err := lister(t, srv).Open(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if _, err := io.ReadAll(rc); err == nil || !strings.Contains(err.Error(), "SHA-256 mismatch") {
		t.Fatalf("reading a tampered blob: %v", err)
	}
}

func TestMonitor(t *testing.T) {
	ctx := context.Background()
	p, _ := market(t, 100)
	data := payload("m", 5<<20+1)
	if _, err := p.Publish(ctx, app("m", data), bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	u, err := p.Monitor()
	if err != nil {
		t.Fatal(err)
	}
	// 5 MiB + 1 byte of blob and a few KiB of documents: 6 MiB used.
	if u != (published.Usage{UsedMB: 6, FreeMB: 94, TotalMB: 100}) {
		t.Fatalf("with TOTAL_MB=100: %+v", u)
	}
	if err := p.Delete(ctx, "m"); err != nil {
		t.Fatal(err)
	}
	if u, _ := p.Monitor(); u.UsedMB != 1 || u.FreeMB != 99 {
		t.Fatalf("after delete: %+v, want the index's 1 MiB used", u)
	}

	// Without TOTAL_MB the file system's numbers, as df gives them.
	fsp, err := NewPublisher(p.Dir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	u, err = fsp.Monitor()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("df", "-P", "-B1048576", p.Dir()).Output()
	if err != nil {
		t.Fatalf("df: %v", err)
	}
	f := strings.Fields(strings.Split(strings.TrimSpace(string(out)), "\n")[1])
	dfTotal, _ := strconv.ParseInt(f[1], 10, 64)
	dfUsed, _ := strconv.ParseInt(f[2], 10, 64)
	dfFree, _ := strconv.ParseInt(f[3], 10, 64)
	// df rounds up, and other tests write to the same file system.
	near := func(a, b int64) bool { return a-b <= 64 && b-a <= 64 }
	if u.TotalMB <= 0 || !near(u.TotalMB, dfTotal) || !near(u.UsedMB, dfUsed) || !near(u.FreeMB, dfFree) {
		t.Fatalf("Monitor %+v; df says total %d used %d free %d", u, dfTotal, dfUsed, dfFree)
	}
}
