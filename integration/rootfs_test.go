package integration

import (
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/builder/fsimage"
)

// rootfsTarball is a busybox root filesystem tarball compressed by tool
// (xz, gzip, zstd) as a marketplace ships it, with /sbin/init.
func rootfsTarball(t testing.TB, tool, osRelease string) []byte {
	t.Helper()
	entries := busyboxRoot(t,
		tarEntry{name: "sbin/", mode: 0o755, dir: true},
		tarEntry{name: "sbin/init", link: "../bin/busybox", symlink: true},
		tarEntry{name: "srv/", mode: 0o755, dir: true},
		tarEntry{name: "srv/app.conf", mode: 0o640, uid: 1000, gid: 1000, body: []byte("port=8080\n")},
	)
	for i := range entries {
		if entries[i].name == "etc/os-release" {
			entries[i].body = []byte(osRelease)
		}
	}
	rc, err := layer(t, entries).Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	plain, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	return testenv.Compress(t, tool, plain)
}

func hexSHA256(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func hexSHA512(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

// TestRootfsImport imports root filesystem tarballs served on loopback
// through the whole stack — the catalog's rootfs saga, the builder
// streaming the tarball into its confined flattener — and reads the
// qcow2 back with the filesystem's own tools. A tampered tarball and a
// too-small size end ERROR saying why, and leave nothing in S3; a local
// tarball is staged, imported and its upload deleted.
func TestRootfsImport(t *testing.T) {
	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t)})
	const osRelease = "ID=debian\nNAME=\"Debian GNU/Linux\"\n"
	files := map[string][]byte{
		"/root.tar.xz":  rootfsTarball(t, "xz", osRelease),
		"/root.tar.gz":  rootfsTarball(t, "gzip", osRelease),
		"/root.tar.zst": rootfsTarball(t, "zstd", osRelease),
	}
	tampered := rootfsTarball(t, "xz", "ID=evil\n")
	files["/tampered.tar.xz"] = tampered
	srvURL := testenv.ServeFiles(t, files)

	for _, name := range []string{"/root.tar.xz", "/root.tar.gz", "/root.tar.zst"} {
		t.Run(name, func(t *testing.T) {
			data := files[name]
			id, out, code := s.create("--name", "rootfs"+strings.ReplaceAll(name, "/", "-"), "--rootfs", "--path", srvURL+name,
				"--size", "64", "--checksum", "sha256:"+hexSHA256(data), "--checksum", "sha512:"+hexSHA512(data))
			if code != 0 {
				t.Fatalf("create exited %d:\n%s", code, out)
			}
			img := s.show(id)
			if img.State != "READY" || string(img.Format) != "qcow2" || img.Size != 64<<20 || img.Type != "OS" {
				t.Fatalf("state %s format %s size %d type %s", img.State, img.Format, img.Size, img.Type)
			}
			if img.Attributes["DISTRO"] != "debian" || img.Attributes["SOURCE_DIGEST"] != "sha256:"+hexSHA256(data) {
				t.Errorf("attributes %v: want DISTRO debian and the tarball's digest", img.Attributes)
			}
			if sum, _ := s.objectSHA256(img.Source); sum != img.SHA256 {
				t.Fatalf("blob sha256 %s, catalog %s", sum, img.SHA256)
			}
			checkRootfsDisk(t, s, img.Source)
		})
	}

	t.Run("tampered", func(t *testing.T) {
		good := files["/root.tar.xz"]
		before := s.objects()
		for _, c := range []struct{ flag, got string }{
			{"sha256:" + hexSHA256(good), "sha256:" + hexSHA256(tampered)},
			{"sha512:" + hexSHA512(good), "sha512:" + hexSHA512(tampered)},
		} {
			id, out, code := s.create("--name", "tampered-"+c.flag[:6], "--rootfs", "--path", srvURL+"/tampered.tar.xz", "--checksum", c.flag)
			img := s.show(id)
			want := "expected " + c.flag + ", got " + c.got
			if code == 0 || img.State != "ERROR" || !strings.Contains(img.Error, want) || !strings.Contains(img.Error, srvURL+"/tampered.tar.xz") {
				t.Fatalf("exit %d, state %s, error %q; want ERROR naming the url and %q\n%s", code, img.State, img.Error, want, out)
			}
		}
		if after := s.objects(); !slices.Equal(after, before) {
			t.Errorf("a tampered rootfs left objects: before %v, after %v", before, after)
		}
	})

	t.Run("too small", func(t *testing.T) {
		id, out, code := s.create("--name", "small", "--rootfs", "--path", srvURL+"/root.tar.gz", "--size", "1")
		img := s.show(id)
		if code == 0 || img.State != "ERROR" || !strings.Contains(img.Error, "too small") || !strings.Contains(img.Error, "needs at least") {
			t.Fatalf("exit %d, state %s, error %q\n%s", code, img.State, img.Error, out)
		}
	})

	t.Run("local file staged", func(t *testing.T) {
		local := filepath.Join(t.TempDir(), "root.tar.zst")
		if err := os.WriteFile(local, files["/root.tar.zst"], 0o600); err != nil {
			t.Fatal(err)
		}
		id, out, code := s.create("--name", "local-rootfs", "--rootfs", "--path", local, "--format", "raw")
		if code != 0 {
			t.Fatalf("create exited %d:\n%s", code, out)
		}
		img := s.show(id)
		if img.State != "READY" || string(img.Format) != "raw" {
			t.Fatalf("state %s format %s", img.State, img.Format)
		}
		for _, o := range s.objects() {
			if strings.Contains(o, "/uploads/") {
				t.Errorf("the staged upload %s was not deleted", o)
			}
		}
	})
}

// checkRootfsDisk downloads a qcow2 built from rootfsTarball and checks
// its filesystem: the tarball's files with their owners, the guest init,
// and a config that runs /sbin/init as the machine's init.
func checkRootfsDisk(t *testing.T, s *stack, url string) {
	t.Helper()
	raw, tree := s.extDisk(t, url)
	if e, ok := tree.Get("srv/app.conf"); !ok || e.Mode&0o7777 != 0o640 || e.UID != 1000 || e.GID != 1000 {
		t.Errorf("srv/app.conf: %+v", e)
	}
	if e, ok := tree.Get("sbin/init"); !ok || e.Link != "../bin/busybox" {
		t.Errorf("sbin/init: %+v", e)
	}
	if e, ok := tree.Get(".slipway/init"); !ok || e.Mode&0o7777 != 0o755 || e.UID != 0 {
		t.Errorf(".slipway/init: %+v", e)
	}
	conf := testenv.Exec(t, "debugfs", "-R", "cat /.slipway/config.json", raw)
	if !strings.Contains(conf, `"/sbin/init"`) || !strings.Contains(conf, `"init": true`) {
		t.Errorf("config.json does not run /sbin/init as the machine's init:\n%s", conf)
	}
	h, err := fsimage.ContentHash(context.Background(), raw, "ext4", "bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	if h != hexSHA256(busyboxBinary(t)) {
		t.Error("bin/busybox content differs from the tarball's")
	}
}
