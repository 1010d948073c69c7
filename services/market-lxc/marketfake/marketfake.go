// Package marketfake is test support: loopback HTTP servers that serve the
// marketplace index formats market-lxc reads, exactly as the real servers
// do, from rootfs tarballs and disks the test gives them, plus a builder of
// small real busybox rootfs tarballs.
//
//   - LinuxContainers: images.linuxcontainers.org — simplestreams
//     (streams/v1/index.json, images.json) and the LXC download index
//     (meta/1.0/index-system) over the same image directories, with
//     SHA256SUMS and detached .asc signatures.
//   - TurnKey: releases.turnkeylinux.org/pve/aplinfo.dat (+ .asc) whose
//     Locations point at the mirror's images/proxmox/ directory, with
//     clearsigned <file>.hash documents signed by a key the fake generates.
//   - OpenNebula: marketplace.opennebula.io's GET /appliance listing
//     (filtered by the OpenNebula User-Agent) and its 302 downloads.
//
// Every fake can drop an app from its listing, serve an empty listing, fail
// its listing with HTTP 500 and tamper a file after its index was written.
package marketfake

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"sync"
	"testing"
)

// control is what every fake can be told to do, and the files it serves.
type control struct {
	mu       sync.Mutex
	dropped  map[string]bool
	empty    bool
	fail     bool
	files    map[string][]byte // path (no leading "/") → content
	requests []Request
}

// Request is one request a fake answered.
type Request struct {
	Method, Path, UserAgent string
}

func newControl() control {
	return control{dropped: map[string]bool{}, files: map[string][]byte{}}
}

// Drop leaves the app key out of the listing (the file stays served) until
// Restore.
func (c *control) Drop(key string) { c.mu.Lock(); c.dropped[key] = true; c.mu.Unlock() }

// Restore lists a dropped app again.
func (c *control) Restore(key string) { c.mu.Lock(); delete(c.dropped, key); c.mu.Unlock() }

// Empty makes the listing valid but empty (on) or normal again (off).
func (c *control) Empty(on bool) { c.mu.Lock(); c.empty = on; c.mu.Unlock() }

// Fail makes the listing answer HTTP 500 (on) or normally again (off).
func (c *control) Fail(on bool) { c.mu.Lock(); c.fail = on; c.mu.Unlock() }

// Requests are the requests answered so far.
func (c *control) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.requests...)
}

func (c *control) listed(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return !c.empty && !c.dropped[key]
}

func (c *control) failing() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fail }

func (c *control) put(path string, data []byte) {
	c.mu.Lock()
	c.files[strings.TrimPrefix(path, "/")] = data
	c.mu.Unlock()
}

// tamper flips one byte in the middle of the file at path, keeping its size.
func (c *control) tamper(t testing.TB, path string) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	data, ok := c.files[path]
	if !ok || len(data) == 0 {
		t.Fatalf("marketfake: no file %q to tamper", path)
	}
	changed := append([]byte(nil), data...)
	changed[len(changed)/2] ^= 0x55
	c.files[path] = changed
}

// Paths are the served file paths, sorted (for tests that look around).
func (c *control) Paths() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var ps []string
	for p := range c.files {
		ps = append(ps, p)
	}
	sort.Strings(ps)
	return ps
}

func (c *control) record(r *http.Request) {
	c.mu.Lock()
	c.requests = append(c.requests, Request{Method: r.Method, Path: r.URL.Path, UserAgent: r.UserAgent()})
	c.mu.Unlock()
}

// serveFile answers GET/HEAD of a stored file with ranges (downloads resume).
func (c *control) serveFile(w http.ResponseWriter, r *http.Request) {
	c.mu.Lock()
	data, ok := c.files[strings.TrimPrefix(r.URL.Path, "/")]
	c.mu.Unlock()
	if !ok {
		http.NotFound(w, r)
		return
	}
	http.ServeContent(w, r, "", fixedTime, strings.NewReader(string(data)))
}

func (c *control) failListing(w http.ResponseWriter) bool {
	if c.failing() {
		http.Error(w, "marketfake: listing failure", http.StatusInternalServerError)
		return true
	}
	return false
}

// start serves h on loopback for the test's life.
func start(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func checkToken(t testing.TB, what, s string) {
	t.Helper()
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._-+:", r)) || s == "" {
			t.Fatalf("marketfake: %s %q: use letters, digits and ._-+: only", what, s)
		}
	}
	if s == "" {
		t.Fatalf("marketfake: empty %s", what)
	}
}

func mustf(t testing.TB, err error, format string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("marketfake: %s: %v", fmt.Sprintf(format, args...), err)
	}
}
