package httpmarket

import (
	"bytes"
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway/slipway/services/market-lxc/published"
	"github.com/slipway/slipway/services/market-lxc/published/publishedtest"
)

var sum = publishedtest.SHA256

func app(name string, data []byte) published.App { return publishedtest.App(name, "qcow2", data) }

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

// TestSuite runs the behaviour both private marketplaces share on a
// PUBLIC_DIR served by a real HTTP server.
func TestSuite(t *testing.T) {
	publishedtest.Suite(t, "qcow2", 3<<20+17, func(t *testing.T) publishedtest.Instance {
		p, srv := market(t, 0)
		// A second Publisher on the directory stands for a second
		// process: it opens the lock file on its own.
		other, err := NewPublisher(p.Dir(), 0)
		if err != nil {
			t.Fatal(err)
		}
		l := lister(t, srv)
		return publishedtest.Instance{
			Pub: p, Other: other, Lister: l,
			Stored: func(t *testing.T) []string { return storedFiles(t, p.Dir()) },
			BlobURL: func(a published.App) string {
				return srv.URL + "/apps/" + a.Name + "/disk." + a.Format
			},
		}
	})
}

// storedFiles lists the files below dir, relative and slash-separated,
// but for the publisher's state directory.
func storedFiles(t *testing.T, dir string) []string {
	t.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if d.IsDir() && rel == stateDir {
			if left, _ := filepath.Glob(filepath.Join(path, "incoming-*")); len(left) > 0 {
				t.Errorf("temporary blobs left behind: %v", left)
			}
			return fs.SkipDir
		}
		if rel != "." {
			files = append(files, filepath.ToSlash(rel)+map[bool]string{true: "/"}[d.IsDir()])
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// TestPlainHTTPClient reads what a Publisher wrote as curl would: the
// index, the metadata document and the blob, by the URLs the README
// gives.
func TestPlainHTTPClient(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	data := publishedtest.Payload("plain", 100000)
	a, err := p.Publish(ctx, app("plain", data), bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	ix, err := published.DecodeIndex(bytes.NewReader(httpGet(t, srv.Client(), srv.URL+"/index.json")))
	if err != nil || len(ix.Apps) != 1 || ix.Apps[0] != a {
		t.Fatalf("index.json: %+v, %v", ix, err)
	}
	meta, err := published.DecodeMeta(bytes.NewReader(httpGet(t, srv.Client(), srv.URL+"/apps/plain/app.json")))
	if err != nil || meta != a {
		t.Fatalf("app.json: %+v, %v", meta, err)
	}
	if got := httpGet(t, srv.Client(), srv.URL+"/"+ix.Apps[0].Blob); !bytes.Equal(got, data) || sum(got) != a.SHA256 {
		t.Fatalf("blob: %d bytes (sha256 %s), want %d (%s)", len(got), sum(got), len(data), a.SHA256)
	}
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

// TestListerRefusesHostile serves index documents a hostile marketplace
// could, and a redirect off the marketplace's host.
func TestListerRefusesHostile(t *testing.T) {
	ctx := context.Background()
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"format_version":1,"apps":[]}`)
	}))
	defer evil.Close()
	cases := append(publishedtest.HostileIndexes(), publishedtest.Hostile{Name: "redirect to another host", Doc: "redirect", Want: "outside BASE_URL"})
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if c.Doc == "redirect" {
					http.Redirect(w, r, evil.URL+"/index.json", http.StatusFound)
					return
				}
				io.WriteString(w, c.Doc)
			}))
			defer srv.Close()
			entries, err := lister(t, srv).List(ctx)
			if err == nil {
				t.Fatalf("listed %+v", entries)
			}
			if !strings.Contains(err.Error(), c.Want) {
				t.Fatalf("error %q does not say %q", err, c.Want)
			}
		})
	}
}

func TestOpenRefusesTamperedBlob(t *testing.T) {
	ctx := context.Background()
	p, srv := market(t, 0)
	data := publishedtest.Payload("t", 4096)
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
	data := publishedtest.Payload("m", 5<<20+1)
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
