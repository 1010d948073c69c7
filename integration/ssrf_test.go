package integration

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// TestFetchesRefuseLoopbackWithoutAllowList: with SLIPWAY_FETCH_ALLOW unset,
// an http:// import from loopback, one from the cloud metadata address, a
// docker:// import from a registry on loopback and a rootfs on loopback
// each end ERROR with a
// message naming the address and the setting, and neither server sees a
// request.
func TestFetchesRefuseLoopbackWithoutAllowList(t *testing.T) {
	var hits atomic.Int32
	var armed atomic.Bool // count only the stack's requests, not the push
	count := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if armed.Load() {
				hits.Add(1)
			}
			next.ServeHTTP(w, r)
		})
	}
	files := httptest.NewServer(count(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write(make([]byte, 1<<20))
	})))
	defer files.Close()
	reg := httptest.NewServer(count(registry.New()))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	push(t, host+"/test/app:1.0", nil, v1.Config{Cmd: []string{"/bin/true"}})
	armed.Store(true)

	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t), noFetchAllow: true})
	for _, c := range []struct {
		name, path, want string
		flags            []string
	}{
		{"http on loopback", files.URL + "/disk.raw",
			"refusing to connect to " + strings.TrimPrefix(files.URL, "http://") + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it", nil},
		{"cloud metadata", "http://169.254.169.254/latest/meta-data/disk.raw",
			"refusing to connect to 169.254.169.254:80 (cloud metadata service): it is never allowed, whatever SLIPWAY_FETCH_ALLOW says", nil},
		{"registry on loopback", "docker://" + host + "/test/app?tag=1.0&size=64&filesystem=ext4",
			"registry " + host + ": refusing to connect to " + host + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it", nil},
		{"rootfs on loopback", files.URL + "/root.tar.xz",
			"refusing to connect to " + strings.TrimPrefix(files.URL, "http://") + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it",
			[]string{"--rootfs"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, out, code := s.create(append([]string{"--name", strings.ReplaceAll(c.name, " ", "-"), "--path", c.path}, c.flags...)...)
			if code == 0 {
				t.Fatalf("create succeeded:\n%s", out)
			}
			img := s.show(id)
			if img.State != "ERROR" || !strings.Contains(img.Error, c.want) {
				t.Errorf("state %s, error %q\nwant ERROR with %q", img.State, img.Error, c.want)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("the CLI did not tell the person why:\n%s", out)
			}
		})
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the refused servers saw %d requests", n)
	}
}
