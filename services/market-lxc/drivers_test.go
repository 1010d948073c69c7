package marketlxc

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
)

func hexSHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func hexSHA512(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

// lxcImage is a build of the Linux Containers fake whose rootfs is a real
// busybox root filesystem naming distro in its os-release.
func lxcImage(t *testing.T, dist, release string) marketfake.LXCImage {
	return marketfake.LXCImage{Dist: dist, Release: release, Arch: "amd64", Variant: "default",
		Build: "20261205_05:24", Rootfs: marketfake.BusyboxTarXz(t, dist, "token-"+dist)}
}

// first is the first of two results.
func first[T, U any](v T, _ U) T { return v }

// flipped is data as marketfake's Tamper serves it.
func flipped(data []byte) []byte {
	b := append([]byte(nil), data...)
	b[len(b)/2] ^= 0x55
	return b
}

// keyring is the fake's public key as a configured keyring.
func keyring(t *testing.T, s *marketfake.Signer) *pgpverify.Keyring {
	t.Helper()
	k, err := pgpverify.ReadKeyring(s.PublicKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestImportRootfsApps imports a Linux Containers app and a TurnKey app
// through the real catalog, builder and MinIO (and a Linux Containers
// disk-kvm.img through the converter): both end READY with the
// distro of their busybox rootfs detected, their sums enforced. Tampered
// tarballs (a sha256 for Linux Containers, a sha512 for TurnKey) end
// ERROR naming the source, the expected and the actual sum, and leave
// nothing in S3.
func TestImportRootfsApps(t *testing.T) {
	debian, alpine := lxcImage(t, "debian", "bookworm"), lxcImage(t, "alpine", "3.20")
	debian.Disk = qcow2(t, "debian-kvm")
	ubuntu := lxcImage(t, "ubuntu", "noble")
	fake := marketfake.NewLinuxContainers(t, debian, alpine, ubuntu)
	fake.Tamper(t, "ubuntu:noble:amd64:default")
	// A mirror that swapped alpine's tarball for another valid one after
	// the index was published.
	evil := marketfake.BusyboxTarXz(t, "evil", "token-evil")
	lxc := newMirror(t, fake.URL, "", map[string][]byte{strings.TrimPrefix(fake.RootfsURL(alpine), fake.URL): evil})
	dc := marketfake.TurnKeyApp{App: "domain-controller", Debian: 12, Version: "18.0", Revision: 1, Arch: "amd64",
		Rootfs: marketfake.BusyboxTarGz(t, "debian", "token-dc")}
	wp := marketfake.TurnKeyApp{App: "wordpress", Debian: 12, Version: "18.1", Revision: 2, Arch: "amd64",
		Rootfs: marketfake.BusyboxTarGz(t, "debian", "token-wp")}
	fakeTK := marketfake.NewTurnKey(t, dc, wp)
	evilGz := marketfake.BusyboxTarGz(t, "evil", "token-evil")
	tk := newMirror(t, fakeTK.URL, "aplinfo.dat", map[string][]byte{strings.TrimPrefix(fakeTK.TarballURL(t, "wordpress"), fakeTK.URL): evilGz})
	h := newHarness(t, Config{TurnKeyKeyring: keyring(t, fakeTK.Signer)}).withImports()

	t.Run("linuxcontainers", func(t *testing.T) {
		mk, ev := h.createMarket(schemas.MarketCreate{Name: "lxc", Mad: schemas.MarketMADLinuxcontainers, Endpoint: lxc, Arches: []string{"amd64"}})
		if ev.Error != "" || ev.Apps != 3 {
			t.Fatalf("listing: %+v", ev)
		}
		app := h.apps(mk.ID)["debian_bookworm_amd64_default"]
		want := market.App{Name: "debian_bookworm_amd64_default", Version: debian.Build, Publisher: lxcPublisher,
			Description: "Debian bookworm amd64 (default)", Format: "tar.xz", Kind: schemas.MarketAppKindRootfs,
			Source: lxc + strings.TrimPrefix(fake.RootfsURL(debian), fake.URL), Checksums: []string{"sha256:" + hexSHA256(debian.Rootfs)},
			OS: "Debian", Release: "bookworm", Arch: "amd64", Variant: "default", Size: int64(len(debian.Rootfs))}
		if app.Version != want.Version || app.Publisher != want.Publisher || app.Description != want.Description ||
			app.Format != want.Format || app.Kind != want.Kind || app.Source != want.Source || !slices.Equal(app.Checksums, want.Checksums) ||
			app.OS != want.OS || app.Release != want.Release || app.Arch != want.Arch || app.Variant != want.Variant || app.Size != want.Size {
			t.Errorf("app:\n got %+v\nwant %+v", app, want)
		}
		img := h.importApp(mk.ID, app.Name, "debian-lxc")
		if img.State != schemas.ImageStateReady || img.Attributes["DISTRO"] != "debian" ||
			img.Attributes["SOURCE_DIGEST"] != "sha256:"+hexSHA256(debian.Rootfs) || img.Attributes["MARKETPLACE_APP"] != app.Name {
			t.Fatalf("image: state %s, error %q, attributes %v", img.State, img.Error, img.Attributes)
		}
		before := h.objects()
		bad := h.importApp(mk.ID, "alpine_3.20_amd64_default", "alpine-lxc")
		checkTampered(t, bad, "lxc/alpine_3.20_amd64_default", lxc+strings.TrimPrefix(fake.RootfsURL(alpine), fake.URL), "sha256:"+hexSHA256(alpine.Rootfs), "sha256:"+hexSHA256(evil))
		// A flipped byte breaks the xz stream before its end: the rest is
		// fetched and hashed, and the error is the mismatch, with both sums.
		broken := h.importApp(mk.ID, "ubuntu_noble_amd64_default", "ubuntu-lxc")
		checkTampered(t, broken, "lxc/ubuntu_noble_amd64_default", lxc+strings.TrimPrefix(fake.RootfsURL(ubuntu), fake.URL),
			"sha256:"+hexSHA256(ubuntu.Rootfs), "sha256:"+hexSHA256(flipped(ubuntu.Rootfs)))
		if after := h.objects(); !slices.Equal(after, before) {
			t.Errorf("a tampered rootfs left objects: before %v, after %v", before, after)
		}
	})

	// FTYPE disk-kvm.img lists the builds that have one, imported as disks.
	t.Run("disk-kvm.img", func(t *testing.T) {
		mk, ev := h.createMarket(schemas.MarketCreate{Name: "lxc-kvm", Mad: schemas.MarketMADLinuxcontainers, Endpoint: lxc,
			Arches: []string{"amd64"}, Ftype: schemas.MarketFileTypeDiskKvmImg})
		if ev.Error != "" || ev.Apps != 1 {
			t.Fatalf("listing: %+v", ev)
		}
		app := h.apps(mk.ID)["debian_bookworm_amd64_default"]
		if app.Kind != schemas.MarketAppKindDisk || app.Format != "qcow2" || !strings.HasSuffix(app.Source, "/disk.qcow2") ||
			!slices.Equal(app.Checksums, []string{"sha256:" + hexSHA256(debian.Disk)}) {
			t.Errorf("app: %+v", app)
		}
		img := h.importApp(mk.ID, app.Name, "debian-kvm")
		if img.State != schemas.ImageStateReady || img.Format != schemas.DiskFormatQcow2 || img.Attributes["MARKETPLACE_APP"] != app.Name {
			t.Errorf("image: state %s, error %q, format %s", img.State, img.Error, img.Format)
		}
	})

	t.Run("turnkeylinux", func(t *testing.T) {
		mk, ev := h.createMarket(schemas.MarketCreate{Name: "turnkey", Mad: schemas.MarketMADTurnkeylinux, Endpoint: tk + "pve", Arches: []string{"amd64"}})
		if ev.Error != "" || ev.Apps != 2 {
			t.Fatalf("listing: %+v", ev)
		}
		app := h.apps(mk.ID)["domain-controller"]
		if app.Version != "18.0-1" || app.Kind != schemas.MarketAppKindRootfs || app.Source != tk+strings.TrimPrefix(fakeTK.TarballURL(t, "domain-controller"), fakeTK.URL) ||
			!slices.Equal(app.Checksums, []string{"sha512:" + hexSHA512(dc.Rootfs), "sha256:" + hexSHA256(dc.Rootfs)}) ||
			app.Release != "12" || app.Arch != "amd64" || app.Publisher != turnkeyPublisher {
			t.Errorf("app: %+v", app)
		}
		img := h.importApp(mk.ID, "domain-controller", "dc")
		if img.State != schemas.ImageStateReady || img.Attributes["DISTRO"] != "debian" {
			t.Fatalf("image: state %s, error %q, attributes %v", img.State, img.Error, img.Attributes)
		}
		before := h.objects()
		bad := h.importApp(mk.ID, "wordpress", "wp")
		checkTampered(t, bad, "turnkey/wordpress", tk+strings.TrimPrefix(fakeTK.TarballURL(t, "wordpress"), fakeTK.URL), "sha512:"+hexSHA512(wp.Rootfs), "sha512:"+hexSHA512(evilGz))
		if after := h.objects(); !slices.Equal(after, before) {
			t.Errorf("a tampered rootfs left objects: before %v, after %v", before, after)
		}
	})
}

// newMirror serves what upstream (ending in "/") serves, but for the
// paths of swap (relative to upstream), whose bodies it replaces (a nil
// body with 404): a mirror that swapped files after the index was signed. A file named rewrite has
// upstream's URL replaced by the mirror's (aplinfo.dat's absolute
// Locations). It returns the mirror's URL, ending in "/".
func newMirror(t *testing.T, upstream, rewrite string, swap map[string][]byte) string {
	t.Helper()
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	var self string
	proxy := httputil.NewSingleHostReverseProxy(up)
	proxy.ModifyResponse = func(r *http.Response) error {
		if rewrite == "" || !strings.HasSuffix(r.Request.URL.Path, "/"+rewrite) {
			return nil
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			return err
		}
		body = bytes.ReplaceAll(body, []byte(upstream), []byte(self))
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		r.Header.Set("Content-Length", strconv.Itoa(len(body)))
		return nil
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if body, ok := swap[strings.TrimPrefix(r.URL.Path, "/")]; ok {
			if body == nil {
				http.NotFound(w, r)
				return
			}
			_, _ = w.Write(body)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	self = srv.URL + "/"
	return self
}

// checkTampered checks that img ended ERROR naming the source (whose path
// names the app), the sum the index gave and the one the bytes have.
func checkTampered(t *testing.T, img schemas.Image, app, src, expected, actual string) {
	t.Helper()
	if img.State != schemas.ImageStateError || !strings.HasPrefix(img.Error, "marketplace app "+app+": ") ||
		!strings.Contains(img.Error, src) || !strings.Contains(img.Error, "expected "+expected+", got "+actual) {
		t.Errorf("tampered: state %s, error %q; want ERROR naming app %s, %s and expected %s", img.State, img.Error, app, src, expected)
	}
}

// qcow2 is a small real qcow2 disk made by qemu-img.
func qcow2(t *testing.T, name string) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), name+".qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", path, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestImportOneAppliance imports IMAGE appliances of an OpenNebula
// marketplace fake through the real catalog and converter: their 302
// download is followed, md5 and sha256 are enforced (a tampered file with
// only an md5 ends ERROR), the VM template is the appliance's with the
// image as its disk. A VMTEMPLATE appliance imports its disk app under its
// template; a SERVICE_TEMPLATE imports each role's VMTEMPLATE app.
func TestImportOneAppliance(t *testing.T) {
	on := marketfake.NewOpenNebula(t,
		marketfake.OneAppliance{Name: "Busybox", Version: "1.0", Publisher: "marketfake", Disk: qcow2(t, "a"),
			Template: `{"CPU":"1","MEMORY":"128","CONTEXT":{"NETWORK":"YES"},"DISK":{"IMAGE":"other"}}`},
		marketfake.OneAppliance{Name: "Legacy", Version: "1.0", Disk: qcow2(t, "b"), LegacyMD5: true},
		marketfake.OneAppliance{Name: "Tampered", Version: "1.0", Disk: qcow2(t, "c"), LegacyMD5: true},
		marketfake.OneAppliance{Name: "Busybox VM", Type: "VMTEMPLATE", Disks: []string{"Busybox"}, Template: `{"CPU":"1","MEMORY":"128"}`},
		marketfake.OneAppliance{Name: "Busybox service", Type: "SERVICE_TEMPLATE", Roles: map[string]string{"web": "Busybox VM", "db": "Busybox VM 2"}},
		marketfake.OneAppliance{Name: "Busybox VM 2", Type: "VMTEMPLATE", Disks: []string{"Legacy"}, Template: `{"CPU":"1","MEMORY":"64"}`},
		marketfake.OneAppliance{Name: "Orphan VM", Type: "VMTEMPLATE", Disks: []string{"Gone"}, Template: `{"CPU":"1"}`},
	)
	served := on.Apps()
	on.Tamper(t, served[2].ID)
	h := newHarness(t, Config{}).withImports()
	mk, ev := h.createMarket(schemas.MarketCreate{Name: "one", Mad: schemas.MarketMADOne, Endpoint: on.URL})
	if ev.Error != "" || ev.Apps != 7 {
		t.Fatalf("listing: %+v", ev)
	}
	apps := h.apps(mk.ID)
	bb := apps["Busybox"]
	if bb.Kind != schemas.MarketAppKindDisk || bb.Source != on.URL+"appliance/"+served[0].ID+"/download/0" || len(bb.Checksums) != 2 ||
		!strings.HasPrefix(bb.Checksums[0], "md5:") || !strings.HasPrefix(bb.Checksums[1], "sha256:") {
		t.Errorf("IMAGE app: %+v", bb)
	}
	if apps["Busybox VM"].Type != schemas.MarketAppTypeVmtemplate || apps["Busybox service"].Type != schemas.MarketAppTypeServiceTemplate {
		t.Errorf("template apps: %+v, %+v", apps["Busybox VM"], apps["Busybox service"])
	}
	if ua := on.Requests()[0].UserAgent; !strings.HasPrefix(ua, "OpenNebula ") {
		t.Errorf("listing User-Agent %q", ua)
	}

	img := h.importApp(mk.ID, "Busybox", "busybox-one")
	if img.State != schemas.ImageStateReady || img.Format != schemas.DiskFormatQcow2 {
		t.Fatalf("image: state %s, error %q", img.State, img.Error)
	}
	shown := testenv.Query[market.App](t, h.ctx, h.cli, ServiceName, schemas.QueryMarketLxcAppShow,
		schemas.MarketAppShowRequest{MarketID: &mk.ID, Name: "Busybox"})
	for _, want := range []string{`NAME = "busybox-one"`, `CPU = "1"`, `MEMORY = "128"`, `NETWORK = "YES"`, `IMAGE_ID = "` + strconv.FormatInt(img.ID, 10) + `"`} {
		if !strings.Contains(shown.Template, want) {
			t.Errorf("template lacks %s:\n%s", want, shown.Template)
		}
	}
	if strings.Contains(shown.Template, "other") {
		t.Errorf("the appliance's own DISK survived:\n%s", shown.Template)
	}
	if img := h.importApp(mk.ID, "Legacy", "legacy-one"); img.State != schemas.ImageStateReady {
		t.Errorf("md5-only appliance: state %s, error %q", img.State, img.Error)
	}
	before := h.objects()
	bad := h.importApp(mk.ID, "Tampered", "tampered-one")
	if bad.State != schemas.ImageStateError || !strings.Contains(bad.Error, "expected md5:") || !strings.Contains(bad.Error, ", got md5:") {
		t.Errorf("tampered: state %s, error %q", bad.State, bad.Error)
	}
	if after := h.objects(); !slices.Equal(after, before) {
		t.Errorf("a tampered disk left objects: before %v, after %v", before, after)
	}

	// A VMTEMPLATE appliance imports the IMAGE app its disk names, as
	// image <name>-0, under its own template.
	vmImg := h.importApp(mk.ID, "Busybox VM", "vm")
	if vmImg.Name != "vm-0" || vmImg.State != schemas.ImageStateReady || vmImg.Attributes["MARKETPLACE_APP"] != "Busybox" {
		t.Errorf("the VM's disk: %s %s %q %v", vmImg.Name, vmImg.State, vmImg.Error, vmImg.Attributes)
	}
	vm := testenv.Query[market.App](t, h.ctx, h.cli, ServiceName, schemas.QueryMarketLxcAppShow,
		schemas.MarketAppShowRequest{MarketID: &mk.ID, Name: "Busybox VM"})
	parsed, err := onetemplate.ParseString(vm.Template)
	if err != nil {
		t.Fatal(err)
	}
	if disks := parsed.Vectors("DISK"); len(disks) != 1 || disks[0]["IMAGE_ID"] != strconv.FormatInt(vmImg.ID, 10) || !strings.Contains(vm.Template, `NAME = "vm"`) {
		t.Errorf("the VM's template:\n%s", vm.Template)
	}
	before = h.objects()
	if msg := h.refused(mk.ID, "Orphan VM", "orphan"); !strings.Contains(msg, `is made of app "Gone", which it does not list`) {
		t.Errorf("import of a VM whose disk app is not listed: %q", msg)
	}
	if after := h.objects(); !slices.Equal(after, before) {
		t.Errorf("a refused import left objects: before %v, after %v", before, after)
	}
	// A SERVICE_TEMPLATE imports each role's VMTEMPLATE app as
	// <name>-<role>: its disks' images and its template.
	env := h.command(market.CommandAppImport, market.AppImport{MarketID: mk.ID, App: "Busybox service", Name: "svc"})
	var svc schemas.MarketAppImported
	decode(t, wait(t, h.rec, env, "app-imported"), &svc)
	if len(svc.Roles) != 2 || svc.Roles[0].Role != "db" || svc.Roles[0].Name != "svc-db" || svc.Roles[1].Name != "svc-web" ||
		svc.Roles[1].App != "Busybox VM" || len(svc.ImageIds) != 2 || svc.ImageID != svc.ImageIds[0] {
		t.Fatalf("service import: %+v", svc)
	}
	for i, r := range svc.Roles {
		img := h.waitImage(svc.ImageIds[i])
		if img.Name != r.Name+"-0" || img.State != schemas.ImageStateReady || len(r.ImageIds) != 1 || r.ImageIds[0] != img.ID {
			t.Errorf("role %s: image %s %s %q, role %+v", r.Role, img.Name, img.State, img.Error, r)
		}
		parsed, err := onetemplate.ParseString(r.Template)
		if err != nil {
			t.Fatal(err)
		}
		if disks, name := parsed.Vectors("DISK"), first(parsed.Get("NAME")); name != r.Name || len(disks) != 1 || disks[0]["IMAGE_ID"] != strconv.FormatInt(img.ID, 10) {
			t.Errorf("role %s's template:\n%s", r.Role, r.Template)
		}
	}
	// A name one of its images would take refuses the import before any
	// image is created.
	before = h.objects()
	if msg := h.refused(mk.ID, "Busybox service", "svc"); !strings.Contains(msg, `an image named "svc-db-0" already exists`) {
		t.Errorf("import over taken names: %q", msg)
	}
	if after := h.objects(); !slices.Equal(after, before) {
		t.Errorf("a refused service import left objects: before %v, after %v", before, after)
	}
}

// TestTurnKeyHashes lists a TurnKey fake whose .hash documents are
// spoiled: an app whose .hash has a bad signature, none, another key's, or
// sums of another file is not listed, and the log names it; the sums of
// a verified file are fetched once. Without a keyring the listing fails
// naming the variable.
func TestTurnKeyHashes(t *testing.T) {
	apps := map[string]marketfake.HashProblem{"good": marketfake.HashOK, "bad-signature": marketfake.HashBadSignature,
		"unsigned": marketfake.HashUnsigned, "other-key": marketfake.HashOtherKey, "wrong-file": marketfake.HashWrongFile}
	var served []marketfake.TurnKeyApp
	for name := range apps {
		served = append(served, marketfake.TurnKeyApp{App: name, Debian: 12, Version: "18.0", Revision: 1, Arch: "amd64",
			Rootfs: marketfake.Gzip(t, []byte("rootfs of "+name))})
	}
	tk := marketfake.NewTurnKey(t, served...)
	for name, p := range apps {
		tk.SetHash(t, name, p)
	}
	h := newHarness(t, Config{TurnKeyKeyring: keyring(t, tk.Signer)})
	mk, ev := h.createMarket(schemas.MarketCreate{Name: "turnkey", Mad: schemas.MarketMADTurnkeylinux, Endpoint: tk.URL + "pve", Arches: []string{"amd64"}})
	if ev.Error != "" || ev.Apps != 1 {
		t.Fatalf("listing: %+v", ev)
	}
	if _, ok := h.apps(mk.ID)["good"]; !ok {
		t.Errorf("the app with a good .hash is not listed: %v", h.apps(mk.ID))
	}
	for name, p := range apps {
		if p != marketfake.HashOK && !h.logged("skipped=4", name+": ") {
			t.Errorf("the log does not name %s:\n%s", name, h.log)
		}
	}
	hashes := func() (n int) {
		for _, r := range tk.Requests() {
			if strings.HasSuffix(r.Path, "good_18.0-1_amd64.tar.gz.hash") {
				n++
			}
		}
		return n
	}
	h.refresh(mk.ID)
	if n := hashes(); n != 1 {
		t.Errorf("the verified .hash was fetched %d times in two listings, want 1", n)
	}

	bare := newHarness(t, Config{})
	_, ev = bare.createMarket(schemas.MarketCreate{Name: "turnkey", Mad: schemas.MarketMADTurnkeylinux, Endpoint: tk.URL + "pve"})
	if !strings.Contains(ev.Error, EnvTurnKeyKeyring) {
		t.Errorf("listing without a keyring: %+v", ev)
	}
}

// TestRefreshRules shows OpenNebula's refresh rules on a Linux Containers
// fake: an app missing from a listing is dropped at the third listing in a
// row without it, an empty listing keeps every app, a failed one keeps
// them and is recorded.
func TestRefreshRules(t *testing.T) {
	debian, alpine := lxcImage(t, "debian", "bookworm"), lxcImage(t, "alpine", "3.20")
	lxc := marketfake.NewLinuxContainers(t, debian, alpine)
	h := newHarness(t, Config{})
	mk, ev := h.createMarket(schemas.MarketCreate{Name: "lxc", Mad: schemas.MarketMADLinuxcontainers, Endpoint: lxc.URL, Arches: []string{"amd64"}})
	if ev.Apps != 2 {
		t.Fatalf("listing: %+v", ev)
	}
	lxc.Drop(alpine.Key())
	for i := 1; i <= 3; i++ {
		ev = h.refresh(mk.ID)
		_, listed := h.apps(mk.ID)["alpine_3.20_amd64_default"]
		if listed != (i < 3) {
			t.Errorf("listing %d without it: listed %v (%+v)", i, listed, ev)
		}
	}
	if ev.Removed != 1 || ev.Apps != 1 {
		t.Errorf("third listing without it: %+v", ev)
	}
	lxc.Empty(true)
	for range 3 {
		h.refresh(mk.ID)
	}
	if apps := h.apps(mk.ID); len(apps) != 1 {
		t.Errorf("empty listings dropped apps: %v", apps)
	}
	lxc.Empty(false)
	lxc.Fail(true)
	if ev = h.refresh(mk.ID); !strings.Contains(ev.Error, "500") || len(h.apps(mk.ID)) != 1 {
		t.Errorf("failed listing: %+v, apps %v", ev, h.apps(mk.ID))
	}
}

// TestDownloadIndexFallback lists a Linux Containers server without
// simplestreams (404 on streams/v1/index.json) from its LXC download
// index: the sums come from each build's SHA256SUMS; a server without
// them has nothing importable, and the listing says how many it left out.
func TestDownloadIndexFallback(t *testing.T) {
	debian := lxcImage(t, "debian", "bookworm")
	lxc := marketfake.NewLinuxContainers(t, debian)
	srv := newMirror(t, lxc.URL, "", map[string][]byte{"streams/v1/index.json": nil})
	h := newHarness(t, Config{})
	mk, ev := h.createMarket(schemas.MarketCreate{Name: "lxc-download", Mad: schemas.MarketMADLinuxcontainers, Endpoint: srv, Arches: []string{"amd64"}})
	if ev.Error != "" || ev.Apps != 1 {
		t.Fatalf("listing: %+v", ev)
	}
	app := h.apps(mk.ID)["debian_bookworm_amd64_default"]
	if app.Version != debian.Build || !slices.Equal(app.Checksums, []string{"sha256:" + hexSHA256(debian.Rootfs)}) ||
		!strings.HasPrefix(app.Source, srv+"images/debian/bookworm/amd64/default/") || app.Description != "debian bookworm amd64 (default)" {
		t.Errorf("app: %+v", app)
	}
	// With SLIPWAY_MARKET_LXC_KEYRING the index's and the sums' detached
	// signatures are checked: the fake's key lists, another key fails
	// the listing naming the signature.
	signed := newHarness(t, Config{LXCKeyring: keyring(t, lxc.Signer)})
	if _, ev := signed.createMarket(schemas.MarketCreate{Name: "lxc-signed", Mad: schemas.MarketMADLinuxcontainers, Endpoint: srv, Arches: []string{"amd64"}}); ev.Error != "" || ev.Apps != 1 {
		t.Errorf("signed listing: %+v", ev)
	}
	stranger := newHarness(t, Config{LXCKeyring: keyring(t, marketfake.NewSigner(t, "Stranger"))})
	if _, ev := stranger.createMarket(schemas.MarketCreate{Name: "lxc-stranger", Mad: schemas.MarketMADLinuxcontainers, Endpoint: srv, Arches: []string{"amd64"}}); ev.Apps != 0 ||
		!strings.Contains(ev.Error, "index-system.asc") {
		t.Errorf("listing signed by a key outside the keyring: %+v", ev)
	}
	lxc.RemoveSums()
	_, ev = h.createMarket(schemas.MarketCreate{Name: "lxc-nosums", Mad: schemas.MarketMADLinuxcontainers, Endpoint: srv, Arches: []string{"amd64"}})
	if ev.Apps != 0 || !strings.Contains(ev.Error, "every entry was left out (1)") || !strings.Contains(ev.Error, "no verified sha256") {
		t.Errorf("listing without SHA256SUMS: %+v", ev)
	}
}
