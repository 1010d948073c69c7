package simplestreams_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/services/market-lxc/indexfile"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/simplestreams"
)

func download(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func TestFetchFromLoopbackServer(t *testing.T) {
	old := marketfake.BusyboxTarXz(t, "debian", "OLD-1")
	cur := marketfake.BusyboxTarXz(t, "debian", "NEW-2")
	fake := marketfake.NewLinuxContainers(t,
		marketfake.LXCImage{Dist: "debian", Release: "bookworm", Title: "12", Arch: "amd64", Variant: "default", Build: "20261205_05:24", Rootfs: cur, Disk: []byte("QFI\xfb disk")},
		marketfake.LXCImage{Dist: "debian", Release: "bookworm", Title: "12", Arch: "amd64", Variant: "default", Build: "20261204_05:24", Rootfs: old},
		marketfake.LXCImage{Dist: "alpine", Release: "3.20", Arch: "arm64", Variant: "default", Build: "20261205_13:00", Rootfs: old},
		marketfake.LXCImage{Dist: "debian", Release: "bookworm", Arch: "amd64", Variant: "cloud", Build: "20261205_05:24", Rootfs: old},
	)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: 10 * time.Second}
	opt := simplestreams.Options{Arches: []string{"amd64"}}

	l, err := simplestreams.Fetch(ctx, client, fake.URL, opt)
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Entries) != 1 || l.Entries[0].Name != "debian_bookworm_amd64_default" || len(l.Skipped) != 0 {
		t.Fatalf("listing = %+v", l)
	}
	e := l.Entries[0]
	body := download(t, e.URL)
	if e.Version != "20261205_05:24" || sha(body) != e.SHA256 || int64(len(body)) != e.Size || sha(body) != sha(cur) {
		t.Fatalf("entry %+v does not describe the newest rootfs", e)
	}

	fake.Tamper(t, "debian:bookworm:amd64:default")
	if got := sha(download(t, e.URL)); got == e.SHA256 {
		t.Fatal("tampering did not change the served file")
	}
	l2, err := simplestreams.Fetch(ctx, client, fake.URL, opt)
	if err != nil || l2.Entries[0].SHA256 != e.SHA256 {
		t.Fatalf("the index must keep the published sum after tampering: %v", err)
	}

	fake.Drop("debian:bookworm:amd64:default")
	if l, err := simplestreams.Fetch(ctx, client, fake.URL, opt); err != nil || len(l.Entries) != 0 {
		t.Fatalf("dropped: %+v, %v", l, err)
	}
	fake.Restore("debian:bookworm:amd64:default")
	fake.Empty(true)
	if l, err := simplestreams.Fetch(ctx, client, fake.URL, simplestreams.Options{}); err != nil || len(l.Entries) != 0 {
		t.Fatalf("empty: %+v, %v", l, err)
	}
	fake.Empty(false)
	fake.Fail(true)
	_, err = simplestreams.Fetch(ctx, client, fake.URL, opt)
	var se *indexfile.StatusError
	if !errors.As(err, &se) || se.Status != 500 || !strings.Contains(err.Error(), "index.json") {
		t.Fatalf("failed listing: err = %v", err)
	}
	fake.Fail(false)

	disk, err := simplestreams.Fetch(ctx, client, fake.URL, simplestreams.Options{Arches: []string{"x86_64"}, File: simplestreams.DiskKVM})
	if err != nil || len(disk.Entries) != 1 || !strings.HasSuffix(disk.Entries[0].URL, "/disk.qcow2") ||
		disk.Entries[0].SHA256 != sha([]byte("QFI\xfb disk")) {
		t.Fatalf("disk listing = %+v, %v", disk, err)
	}
	all, err := simplestreams.Fetch(ctx, client, fake.URL, simplestreams.Options{})
	if err != nil || len(all.Entries) != 2 {
		t.Fatalf("all arches = %+v, %v", all, err)
	}
}

func TestFetchRefusesBadEndpointsAndHugeFiles(t *testing.T) {
	ctx := context.Background()
	for _, ep := range []string{"ftp://x/", "http://user:pw@x/", "http:///x", "http://x/?a=b", "::"} {
		if _, err := simplestreams.Fetch(ctx, http.DefaultClient, ep, simplestreams.Options{}); err == nil {
			t.Errorf("endpoint %q accepted", ep)
		}
	}
	huge := marketfake.NewRaw(t, map[string][]byte{
		"streams/v1/index.json": []byte(`{"format":"index:1.0","index":{"i":{"datatype":"image-downloads","path":"streams/v1/images.json"}}}`),
	}, map[string]int64{"streams/v1/images.json": simplestreams.MaxProducts + 1})
	_, err := simplestreams.Fetch(ctx, http.DefaultClient, huge.URL, simplestreams.Options{})
	if !errors.Is(err, indexfile.ErrTooLarge) {
		t.Fatalf("huge images.json: err = %v, want ErrTooLarge", err)
	}
	escaping := marketfake.NewRaw(t, map[string][]byte{
		"streams/v1/index.json": []byte(`{"format":"index:1.0","index":{"i":{"datatype":"image-downloads","path":"../../secret.json"}}}`),
	}, nil)
	if _, err := simplestreams.Fetch(ctx, http.DefaultClient, escaping.URL, simplestreams.Options{}); err == nil || !strings.Contains(err.Error(), "escapes") {
		t.Fatalf("escaping products path: err = %v", err)
	}
}
