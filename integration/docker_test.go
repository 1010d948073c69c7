package integration

import (
	"archive/tar"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/builder/fsimage"
)

// TestDockerImport imports container images from a real OCI registry on
// loopback through the whole stack — market-dockerhub resolves, the builder
// flattens and makes the filesystem, the converter converts, the catalog
// commits — and reads the resulting disk back with the filesystem's own
// tools. Hostile and mistaken URLs end ERROR with a message naming the
// problem, and the services keep serving.
func TestDockerImport(t *testing.T) {
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t)})

	base := layer(t, busyboxRoot(t,
		tarEntry{name: "etc/motd", mode: 0o644, body: []byte("gone in the next layer\n")},
		tarEntry{name: "srv/", mode: 0o755, dir: true},
		tarEntry{name: "srv/app.conf", mode: 0o640, uid: 1000, gid: 1000, body: []byte("port=8080\n")},
	))
	top := layer(t, []tarEntry{
		{name: "etc/.wh.motd", mode: 0o644},
		{name: "usr/", mode: 0o755, dir: true},
		{name: "usr/bin/", mode: 0o755, dir: true},
		{name: "usr/bin/passwd", mode: 0o4755, body: []byte("setuid\n")},
	})
	push(t, host+"/test/busybox:1.0", []v1.Layer{base, top}, v1.Config{
		Entrypoint: []string{"/bin/busybox"}, Cmd: []string{"echo", "hello"},
		Env: []string{"PATH=/bin:/usr/bin"}, WorkingDir: "/srv",
	})
	escape := layer(t, []tarEntry{{name: "../../../tmp/slipway-escape", mode: 0o644, body: []byte("x")}})
	push(t, host+"/test/evil:1.0", []v1.Layer{base, escape}, v1.Config{})
	absolute := layer(t, []tarEntry{{name: "/etc/cron.d/evil", mode: 0o644, body: []byte("x")}})
	push(t, host+"/test/absolute:1.0", []v1.Layer{base, absolute}, v1.Config{})
	hardlink := layer(t, []tarEntry{{name: "etc/shadow-copy", link: "../../../../etc/shadow", hardlink: true}})
	push(t, host+"/test/hardlink:1.0", []v1.Layer{base, hardlink}, v1.Config{})
	symlink := layer(t, []tarEntry{{name: "srv/up", link: "../../../../../..", symlink: true}})
	push(t, host+"/test/symlink:1.0", []v1.Layer{base, symlink}, v1.Config{})

	t.Run("container image to qcow2", func(t *testing.T) {
		url := "docker://" + host + "/test/busybox?tag=1.0&size=64&filesystem=ext4&format=qcow2"
		id, out, code := s.create("--name", "bb", "--path", url)
		if code != 0 {
			t.Fatalf("create exited %d:\n%s", code, out)
		}
		img := s.show(id)
		if img.State != "READY" || string(img.Format) != "qcow2" || img.Size != 64<<20 {
			t.Fatalf("state %s format %s size %d", img.State, img.Format, img.Size)
		}
		if got := img.Attributes["SOURCE_DIGEST"]; !strings.HasPrefix(got, "sha256:") {
			t.Errorf("no pinned digest recorded: attributes %v", img.Attributes)
		}
		if got := img.Attributes["DISTRO"]; got != "busybox" {
			t.Errorf("DISTRO %q, want busybox (from /etc/os-release)", got)
		}
		sum, _ := s.objectSHA256(img.Source)
		if sum != img.SHA256 {
			t.Fatalf("blob sha256 %s, catalog %s", sum, img.SHA256)
		}

		raw, tree := s.extDisk(t, img.Source)
		want := map[string]struct {
			mode     uint32
			uid, gid uint32
		}{
			"bin/busybox":          {0o755, 0, 0},
			"srv/app.conf":         {0o640, 1000, 1000},
			"usr/bin/passwd":       {0o4755, 0, 0},
			".slipway/init":        {0o755, 0, 0},
			"etc/os-release":       {0o644, 0, 0},
			".slipway/config.json": {0o644, 0, 0},
		}
		for p, w := range want {
			e, ok := tree.Get(p)
			if !ok {
				t.Errorf("%s missing from the disk", p)
				continue
			}
			if e.Mode&0o7777 != w.mode || e.UID != w.uid || e.GID != w.gid {
				t.Errorf("%s: mode %o owner %d:%d, want %o %d:%d", p, e.Mode, e.UID, e.GID, w.mode, w.uid, w.gid)
			}
		}
		if _, ok := tree.Get("etc/motd"); ok {
			t.Error("etc/motd survived its whiteout")
		}
		if e, ok := tree.Get("bin/sh"); !ok || e.Link != "busybox" {
			t.Errorf("bin/sh symlink: %+v", e)
		}
		h, err := fsimage.ContentHash(context.Background(), raw, "ext4", "bin/busybox")
		if err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256(busyboxBinary(t)); h != hex.EncodeToString(want[:]) {
			t.Error("bin/busybox content differs from the layer's")
		}
	})

	bad := []struct{ name, url, want string }{
		{"unknown tag", "docker://" + host + "/test/busybox?tag=nope&size=64", "unknown manifest"},
		{"unknown repository", "docker://" + host + "/test/nothing?size=64", "unknown"},
		{"size too small", "docker://" + host + "/test/busybox?tag=1.0&size=1", "too small"},
		{"path escape in a layer", "docker://" + host + "/test/evil?tag=1.0&size=64", "climbs out of the root"},
		{"absolute path in a layer", "docker://" + host + "/test/absolute?tag=1.0&size=64", "/etc/cron.d/evil"},
		{"hard link out of the root", "docker://" + host + "/test/hardlink?tag=1.0&size=64", "etc/shadow-copy"},
		{"symlink out of the root", "docker://" + host + "/test/symlink?tag=1.0&size=64", "srv/up"},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			id, out, code := s.create("--name", "bad-"+strings.ReplaceAll(b.name, " ", "-"), "--path", b.url)
			if code == 0 {
				t.Fatalf("accepted:\n%s", out)
			}
			img := s.waitSettled(id, 2*time.Minute)
			t.Logf("image %d: %s: %s", id, img.State, img.Error)
			if img.State != "ERROR" || !strings.Contains(strings.ToLower(img.Error), strings.ToLower(b.want)) {
				t.Errorf("state %s error %q, want ERROR naming %q", img.State, img.Error, b.want)
			}
		})
	}
	if _, err := os.Stat("/tmp/slipway-escape"); err == nil {
		t.Error("a layer wrote outside its root: /tmp/slipway-escape exists")
	}

	t.Run("malformed URLs are refused before any image exists", func(t *testing.T) {
		for _, u := range []string{"docker://", "docker://" + host + "/test/busybox?filesystem=btrfs", "docker://" + host + "/test/busybox?size=abc"} {
			stdout, stderr, code := s.slipway("image", "create", "--name", "malformed", "--path", u)
			if code == 0 || idLine(stdout) != "" {
				t.Errorf("%s: exit %d, out %q", u, code, stdout)
			}
			if !strings.Contains(stdout+stderr, "docker") && !strings.Contains(stdout+stderr, "filesystem") && !strings.Contains(stdout+stderr, "size") {
				t.Errorf("%s: unclear error %q", u, stdout+stderr)
			}
		}
	})

	t.Run("no build leftovers and the services keep serving", func(t *testing.T) {
		for _, o := range s.objects() {
			if strings.HasPrefix(o, "s3://slipway-uploads/") {
				t.Errorf("staging blob left behind: %s", o)
			}
		}
		id, out, code := s.create("--name", "bb-raw", "--path", "docker://"+host+"/test/busybox:1.0?size=48&filesystem=ext2")
		if code != 0 {
			t.Fatalf("import after the failures: exit %d\n%s", code, out)
		}
		if img := s.show(id); img.State != "READY" || string(img.Format) != "raw" {
			t.Fatalf("state %s format %s", img.State, img.Format)
		}
	})
}

type tarEntry struct {
	name         string
	mode         int64
	uid, gid     int
	body         []byte
	link         string
	dir, symlink bool
	hardlink     bool
}

// busyboxBinary is the host's busybox-static.
func busyboxBinary(t testing.TB) []byte {
	t.Helper()
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatalf("busybox-static is needed (make deps): %v", err)
	}
	return busybox
}

// busyboxRoot is a minimal root filesystem, busybox-static with sh linked
// to it and an os-release, followed by extra.
func busyboxRoot(t testing.TB, extra ...tarEntry) []tarEntry {
	t.Helper()
	return append([]tarEntry{
		{name: "bin/", mode: 0o755, dir: true},
		{name: "bin/busybox", mode: 0o755, body: busyboxBinary(t)},
		{name: "bin/sh", link: "busybox", symlink: true},
		{name: "etc/", mode: 0o755, dir: true},
		{name: "etc/os-release", mode: 0o644, body: []byte("ID=busybox\nNAME=BusyBox\n")},
	}, extra...)
}

// layer makes an uncompressed-tar image layer from entries.
func layer(t testing.TB, entries []tarEntry) v1.Layer {
	t.Helper()
	tes := make([]testenv.TarEntry, len(entries))
	for i, e := range entries {
		h := tar.Header{Name: e.name, Mode: e.mode, Uid: e.uid, Gid: e.gid, ModTime: time.Unix(1700000000, 0)}
		switch {
		case e.dir:
			h.Typeflag = tar.TypeDir
		case e.symlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, e.link
		case e.hardlink:
			h.Typeflag, h.Linkname = tar.TypeLink, e.link
		default:
			h.Typeflag, h.Size = tar.TypeReg, int64(len(e.body))
		}
		tes[i] = testenv.TarEntry{Header: h, Body: e.body}
	}
	return testenv.TarLayer(t, tes...)
}

// push pushes an image of layers with config cfg, for linux/amd64, as ref.
func push(t testing.TB, ref string, layers []v1.Layer, cfg v1.Config) {
	t.Helper()
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Push(t, ref, testenv.ForPlatform(t, img, "amd64", cfg))
}

// buildGuestInit builds the static slipway-init the builder injects.
func buildGuestInit(t testing.TB) string {
	t.Helper()
	return testenv.Build(t, "./services/builder/cmd/slipway-init", true)
}
