package builder

import (
	"archive/tar"
	"crypto/md5"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/tree"
)

// rootfsTar is a busybox root filesystem as a marketplace ships it: the
// busybox image's files plus /sbin/init, with osRelease as its
// os-release.
func rootfsTar(t *testing.T, osRelease string) []byte {
	t.Helper()
	files := append(busyboxFiles(t),
		file{name: "sbin/", typ: tar.TypeDir, mode: 0o755},
		file{name: "sbin/init", typ: tar.TypeSymlink, mode: 0o777, link: "../bin/busybox"},
		file{name: "etc/hostname", typ: tar.TypeReg, mode: 0o644, data: []byte("rootfs\n")},
	)
	entries := make([]testenv.TarEntry, 0, len(files))
	for _, f := range files {
		if f.name == "usr/lib/os-release" {
			f.data = []byte(osRelease)
		}
		entries = append(entries, testenv.TarEntry{Header: tar.Header{Name: f.name, Typeflag: f.typ, Mode: f.mode, Linkname: f.link,
			Size: int64(len(f.data)), ModTime: time.Unix(1700000000, 0)}, Body: f.data})
	}
	return testenv.Tar(t, entries...)
}

const testOSRelease = "NAME=\"Slipway Test\"\nID=\"slipway-test\"\n"

func sums(data []byte) (md5sum, sha256sum, sha512sum string) {
	m, s := md5.Sum(data), sha512.Sum512(data)
	return "md5:" + hex.EncodeToString(m[:]), "sha256:" + sha(data), "sha512:" + hex.EncodeToString(s[:])
}

// TestBuildRootfs: a busybox rootfs served as .tar.xz, .tar.gz and
// .tar.zst becomes a qcow2 holding its files, the guest init and a config
// that runs /sbin/init as the machine's init; every checksum given is
// checked and the distro read from os-release.
func TestBuildRootfs(t *testing.T) {
	h := newHarness(t)
	plain := rootfsTar(t, testOSRelease)
	files := map[string][]byte{
		"/rootfs.tar.xz":  testenv.Compress(t, "xz", plain),
		"/rootfs.tar.gz":  testenv.Compress(t, "gzip", plain),
		"/rootfs.tar.zst": testenv.Compress(t, "zstd", plain),
	}
	url := testenv.ServeFiles(t, files)
	for i, name := range []string{"/rootfs.tar.xz", "/rootfs.tar.gz", "/rootfs.tar.zst"} {
		id := int64(20 + i)
		m, s256, s512 := sums(files[name])
		dest := testenv.Dest(id, "disk.qcow2")
		var built schemas.BuilderBuilt
		kind, progress := h.build(schemas.BuilderBuild{ImageID: id, Kind: schemas.ContentKindRootfs, URL: url + name,
			Checksums: []string{m, s256, s512}, Format: schemas.DiskFormatQcow2, Dest: dest}, &built)
		if kind != "built" {
			t.Fatalf("%s: got %s: %+v", name, kind, built)
		}
		if built.Dest != dest || built.Format != schemas.DiskFormatQcow2 || built.VirtualSize <= 0 || built.Distro != "slipway-test" || built.Digest != s256 {
			t.Fatalf("%s: built = %+v", name, built)
		}
		if len(progress) == 0 {
			t.Errorf("%s: no progress event", name)
		}
		qcow := h.download(dest)
		if got := sha(readFile(t, qcow)); got != built.SHA256 {
			t.Fatalf("%s: stored blob sha256 %s, event says %s", name, got, built.SHA256)
		}
		raw, tr := qcowTree(t, h.ctx, qcow)
		if bb := mustEntry(t, tr, "bin/busybox"); bb.Type != tree.Regular || bb.Mode != 0o755 || bb.UID != 0 {
			t.Fatalf("%s: bin/busybox = %+v", name, bb)
		}
		if in := mustEntry(t, tr, "sbin/init"); in.Type != tree.Symlink || in.Link != "../bin/busybox" {
			t.Fatalf("%s: sbin/init = %+v", name, in)
		}
		checkHash(t, h.ctx, raw, "bin/busybox", sha(readFile(t, "/bin/busybox")))
		checkHash(t, h.ctx, raw, "etc/hostname", sha([]byte("rootfs\n")))
		checkHash(t, h.ctx, raw, ".slipway/init", sha(readFile(t, initBinary)))
		conf, _ := json.MarshalIndent(rootfsConfig(), "", "  ")
		checkHash(t, h.ctx, raw, ".slipway/config.json", sha(conf))
		if !strings.Contains(string(conf), `"/sbin/init"`) || !strings.Contains(string(conf), `"init": true`) {
			t.Fatalf("config %s does not run /sbin/init as the machine's init", conf)
		}
	}
}

// TestBuildRootfsTampered: a tarball that is not the one its checksums
// describe (sha256, sha512 alike) ends the build for good before mkfs,
// naming the url, expected and actual; nothing is stored.
func TestBuildRootfsTampered(t *testing.T) {
	h := newHarness(t)
	good := testenv.Compress(t, "xz", rootfsTar(t, testOSRelease))
	bad := testenv.Compress(t, "xz", rootfsTar(t, "NAME=Evil\nID=evil\n"))
	url := testenv.ServeFiles(t, map[string][]byte{"/rootfs.tar.xz": bad})
	_, goodSHA256, goodSHA512 := sums(good)
	_, badSHA256, badSHA512 := sums(bad)
	for i, c := range []struct{ want, got string }{{goodSHA256, badSHA256}, {goodSHA512, badSHA512}} {
		id := int64(30 + i)
		dest := testenv.Dest(id, "disk.qcow2")
		var f schemas.Failure
		kind, _ := h.build(schemas.BuilderBuild{ImageID: id, Kind: schemas.ContentKindRootfs, URL: url + "/rootfs.tar.xz",
			Checksums: []string{c.want}, Format: schemas.DiskFormatQcow2, Dest: dest}, &f)
		want := "checksum mismatch for " + url + "/rootfs.tar.xz: expected " + c.want + ", got " + c.got
		if kind != "failed" || f.Retryable || f.Phase != string(schemas.BuilderPhasePull) || f.Code != schemas.CodeInvalidInput ||
			!strings.Contains(f.Error, want) {
			t.Fatalf("%s: %+v\nwant a final pull failure containing %q", kind, f, want)
		}
		if h.exists(dest) {
			t.Errorf("a tampered rootfs left %s", dest)
		}
	}
}

// TestBuildRootfsTooSmall: a size that cannot hold the content ends ERROR
// saying how much it needs, never a truncated filesystem.
func TestBuildRootfsTooSmall(t *testing.T) {
	h := newHarness(t)
	url := testenv.ServeFiles(t, map[string][]byte{"/rootfs.tar.gz": testenv.Compress(t, "gzip", rootfsTar(t, testOSRelease))})
	dest := testenv.Dest(40, "disk.qcow2")
	var f schemas.Failure
	kind, _ := h.build(schemas.BuilderBuild{ImageID: 40, Kind: schemas.ContentKindRootfs, URL: url + "/rootfs.tar.gz",
		SizeMiB: 1, Format: schemas.DiskFormatQcow2, Dest: dest}, &f)
	h.checkTooSmall(kind, f, dest)
}

// TestBuildRootfsRefused: a rootfs command that names a datastore
// object, a reference, or a container command with checksums is refused
// before anything is fetched.
func TestBuildRootfsRefused(t *testing.T) {
	h := newHarness(t)
	for i, c := range []struct {
		cmd  schemas.BuilderBuild
		want string
	}{
		{schemas.BuilderBuild{Kind: schemas.ContentKindRootfs, URL: "s3://" + testenv.Images + "/images/1/x/disk.raw"}, "is a datastore bucket"},
		{schemas.BuilderBuild{Kind: schemas.ContentKindRootfs, URL: "http://127.0.0.1:1/r.tar", Reference: h.reg + "/x@sha256:" + strings.Repeat("ab", 32)}, "reference does not apply"},
		{schemas.BuilderBuild{Kind: schemas.ContentKindContainer, Reference: h.reg + "/x@sha256:" + strings.Repeat("ab", 32), Checksums: []string{"md5:" + strings.Repeat("0", 32)}}, "apply to kind rootfs only"},
	} {
		id := int64(50 + i)
		c.cmd.ImageID, c.cmd.Dest = id, testenv.Dest(id, "disk.raw")
		var f schemas.Failure
		if kind, _ := h.build(c.cmd, &f); kind != "failed" || f.Retryable || f.Code != schemas.CodeInvalidCommand || !strings.Contains(f.Error, c.want) {
			t.Errorf("%+v: %s %+v, want a refusal containing %q", c.cmd, kind, f, c.want)
		}
	}
}
