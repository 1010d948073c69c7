package cli

import (
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestEndToEndUnresolvableSourceFailsAtOnce is the user story of issue 12:
// an import from a host name that does not resolve ends within seconds
// with the image in ERROR, and the CLI prints the error and its code
// (before, it printed nothing and the image stayed LOCKED for 15 minutes).
func TestEndToEndUnresolvableSourceFailsAtOnce(t *testing.T) {
	flags, _ := stack(t)
	start := time.Now()
	r := slipway(t, flags, "image", "create", "--name", "bad", "--path", "https://nonexistent.invalid/x.qcow2", "--wait")
	took := time.Since(start)
	if r.code != 1 || !strings.Contains(r.stdout, "ID: 0") || !strings.Contains(r.stderr, "image 0: ERROR: ") ||
		!strings.Contains(r.stderr, "nonexistent.invalid") || !strings.Contains(r.stderr, "(host-not-found)") {
		t.Errorf("exit %d\nstdout: %s\nstderr: %s\nwant ERROR with the code host-not-found", r.code, r.stdout, r.stderr)
	}
	if took > 30*time.Second {
		t.Errorf("the import failed after %s, want seconds", took)
	}
	images := list(t, flags)
	if len(images) != 1 || images[0].State != "ERROR" || !strings.Contains(images[0].Error, "nonexistent.invalid") {
		t.Errorf("after the import: %+v", images)
	}
}

// TestEndToEndRetriedAttemptIsShown: a source that answers 503 twice and
// then the disk: the watcher sees each failed attempt (its reason, its code
// and when the next comes), then the image becomes READY.
func TestEndToEndRetriedAttemptIsShown(t *testing.T) {
	t.Setenv("SLIPWAY_FETCH_ALLOW", "127.0.0.1/32") // the source is on loopback
	flags, _ := stack(t)
	disk, err := os.ReadFile(qcow2(t))
	if err != nil {
		t.Fatal(err)
	}
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if requests.Add(1) <= 2 {
			http.Error(w, "busy, try later", http.StatusServiceUnavailable)
			return
		}
		http.ServeContent(w, r, "disk.qcow2", time.Time{}, strings.NewReader(string(disk)))
	}))
	defer srv.Close()
	r := slipway(t, flags, "image", "create", "--name", "flaky", "--path", srv.URL+"/disk.qcow2", "--wait", "--timeout", "2m")
	if r.code != 0 || !strings.Contains(r.stdout, "image 0: READY") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s\nwant READY after the retries", r.code, r.stdout, r.stderr)
	}
	for _, want := range []string{"image 0: attempt 1 of 10 failed (unavailable): ", "image 0: attempt 2 of 10 failed (unavailable): ",
		"503 Service Unavailable", "; next attempt at "} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.stderr)
		}
	}
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3 (two refused, one served)", n)
	}
}
