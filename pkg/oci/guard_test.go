package oci_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// TestGuardRefusesLoopbackRegistry: with the default guard a registry on
// loopback is refused before any request reaches it, for Resolve, Pull and
// PushDisk alike, with an error naming the address and the setting.
func TestGuardRefusesLoopbackRegistry(t *testing.T) {
	ctx := context.Background()
	var hits counter
	host := testenv.OCIRegistry(t, hits.wrap(func(*http.Request) bool { return true }))
	dig := push(t, host+"/lib/app:1", busyboxImage(t, "linux/amd64"))
	before := hits.count()
	want := "registry " + host + ": refusing to connect to " + host + " (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it"

	_, err := oci.Resolve(ctx, host+"/lib/app:1", oci.Options{})
	if err == nil || err.Error() != want {
		t.Errorf("Resolve: %v\nwant %s", err, want)
	}
	var re *oci.RegistryError
	if !errors.As(err, &re) || re.Registry != host {
		t.Errorf("Resolve: %#v, want a RegistryError of %s", err, host)
	}
	if _, ok := netguard.AsRefused(err); !ok {
		t.Errorf("Resolve: %v does not carry the RefusedError", err)
	}
	_, err = oci.Pull(ctx, host+"/lib/app@"+dig, t.TempDir(), oci.Options{})
	if err == nil || err.Error() != want {
		t.Errorf("Pull: %v\nwant %s", err, want)
	}
	// A mirror on loopback is refused too, and the origin's refusal comes
	// first.
	_, err = oci.Resolve(ctx, "127.0.0.1:1/lib/app:1", oci.Options{Mirrors: map[string][]string{"127.0.0.1:1": {host}}})
	mustContain(t, err, "registry 127.0.0.1:1: refusing to connect to 127.0.0.1:1 (loopback)",
		"mirror "+host+": registry "+host+": refusing to connect to "+host+" (loopback)")
	if n := hits.count(); n != before {
		t.Errorf("the registry saw %d requests", n-before)
	}
	// Opened, it answers.
	if _, err := oci.Resolve(ctx, host+"/lib/app:1", oci.Options{Guard: netguard.MustParse(host)}); err != nil {
		t.Errorf("Resolve with %s open: %v", host, err)
	}
}

// TestGuardChecksEveryHop: a registry opened by host:port that redirects
// its blobs to, or sends its token requests to, another address gets no
// further than that address's check.
func TestGuardChecksEveryHop(t *testing.T) {
	ctx := context.Background()
	reg := testenv.OCIHandler()
	// storage serves the blobs the registry redirects to, as a registry
	// backed by object storage does.
	storage := httptest.NewServer(reg)
	defer storage.Close()
	host := testenv.OCIRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if isBlobGet(r) {
				http.Redirect(w, r, storage.URL+r.URL.Path, http.StatusTemporaryRedirect)
				return
			}
			reg.ServeHTTP(w, r)
		})
	})
	storageHost := strings.TrimPrefix(storage.URL, "http://")
	push(t, storageHost+"/lib/app:1", busyboxImage(t, "linux/amd64"))

	// Resolve reads the config blob, Pull the layers: both are redirected.
	_, err := oci.Resolve(ctx, host+"/lib/app:1", oci.Options{Guard: netguard.MustParse(host)})
	mustContain(t, err, "refusing to connect to "+storageHost+" (loopback): set SLIPWAY_FETCH_ALLOW=127.0.0.1/32 to allow it")
	if _, ok := netguard.AsRefused(err); !ok {
		t.Errorf("Resolve: %v does not carry the RefusedError", err)
	}
	both := oci.Options{Guard: netguard.MustParse(host + "," + storageHost)}
	res, err := oci.Resolve(ctx, host+"/lib/app:1", both)
	if err != nil {
		t.Fatalf("Resolve with the storage open: %v", err)
	}
	_, err = pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: netguard.MustParse(host)})
	mustContain(t, err, "refusing to connect to "+storageHost+" (loopback)")
	if _, err := pullAll(t, ctx, res.Reference, t.TempDir(), both); err != nil {
		t.Errorf("pull with the storage open: %v", err)
	}

	// A token realm on a refused address. (go-containerregistry itself
	// refuses realms that are private IP literals; a name that resolves to
	// one gets past it, and not past the guard.)
	tokens := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"token":"t0ken"}`)
	}))
	defer tokens.Close()
	tokenHost := strings.Replace(strings.TrimPrefix(tokens.URL, "http://"), "127.0.0.1", "localhost", 1)
	secured := testenv.OCIRegistry(t, func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Authorization") != "Bearer t0ken" {
				w.Header().Set("WWW-Authenticate", `Bearer realm="http://`+tokenHost+`/token",service="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			reg.ServeHTTP(w, r)
		})
	})
	_, err = oci.Resolve(ctx, secured+"/lib/app:1", oci.Options{Guard: netguard.MustParse(secured)})
	mustContain(t, err, "(loopback, the address of localhost): set SLIPWAY_FETCH_ALLOW=")
	if re, ok := netguard.AsRefused(err); !ok || !re.Addr.Addr().IsLoopback() || re.Addr.Port() != uint16(tokens.Listener.Addr().(*net.TCPAddr).Port) {
		t.Errorf("Resolve: %v, want a refusal of the token server", err)
	}
	if _, err := oci.Resolve(ctx, secured+"/lib/app:1", oci.Options{Guard: netguard.MustParse(secured + "," + tokenHost)}); err != nil {
		t.Errorf("Resolve with the token server open: %v", err)
	}
}
