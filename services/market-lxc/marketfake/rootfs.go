package marketfake

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"os"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/ulikunitz/xz"
)

var fixedTime = time.Unix(1764892800, 0).UTC()

// BusyboxRootfs is the uncompressed tar of a minimal real root filesystem:
// busybox-static (Debian's, /bin/busybox on the test host) with sh linked
// to it, an os-release naming distro, and a /sbin/init script that prints
// token on the console and powers the machine off. token and distro are
// letters, digits and ._-+: only (they are written into a script).
func BusyboxRootfs(t testing.TB, distro, token string) []byte {
	t.Helper()
	checkToken(t, "token", token)
	checkToken(t, "distro", distro)
	busybox, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.Skip(t, "skipped: busybox-static is needed at /bin/busybox (make deps): %v", err)
	}
	dir := func(name string) testenv.TarEntry {
		return testenv.TarEntry{Header: tar.Header{Name: name, Typeflag: tar.TypeDir, Mode: 0o755, ModTime: fixedTime}}
	}
	file := func(name string, mode int64, body []byte) testenv.TarEntry {
		return testenv.TarEntry{Header: tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: mode, Size: int64(len(body)), ModTime: fixedTime}, Body: body}
	}
	link := func(name, target string) testenv.TarEntry {
		return testenv.TarEntry{Header: tar.Header{Name: name, Typeflag: tar.TypeSymlink, Linkname: target, Mode: 0o777, ModTime: fixedTime}}
	}
	init := "#!/bin/sh\n/bin/busybox mount -t proc proc /proc 2>/dev/null\necho " + token + "\n/bin/busybox sync\n/bin/busybox poweroff -f\n"
	osRelease := "ID=" + distro + "\nNAME=" + distro + "\nPRETTY_NAME=\"" + distro + " (marketfake busybox)\"\n"
	return testenv.Tar(t,
		dir("bin/"), file("bin/busybox", 0o755, busybox), link("bin/sh", "busybox"),
		dir("sbin/"), file("sbin/init", 0o755, []byte(init)),
		dir("etc/"), file("etc/os-release", 0o644, []byte(osRelease)),
		dir("dev/"), dir("proc/"), dir("sys/"), dir("tmp/"), dir("root/"),
	)
}

// Xz compresses data as a .xz stream.
func Xz(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := xz.NewWriter(&buf)
	mustf(t, err, "xz writer")
	_, err = w.Write(data)
	mustf(t, err, "xz write")
	mustf(t, w.Close(), "xz close")
	return buf.Bytes()
}

// Gzip compresses data as a .gz stream.
func Gzip(t testing.TB, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	_, err := w.Write(data)
	mustf(t, err, "gzip write")
	mustf(t, w.Close(), "gzip close")
	return buf.Bytes()
}

// BusyboxTarXz is BusyboxRootfs as a rootfs.tar.xz (Linux Containers).
func BusyboxTarXz(t testing.TB, distro, token string) []byte {
	return Xz(t, BusyboxRootfs(t, distro, token))
}

// BusyboxTarGz is BusyboxRootfs as a .tar.gz (TurnKey).
func BusyboxTarGz(t testing.TB, distro, token string) []byte {
	return Gzip(t, BusyboxRootfs(t, distro, token))
}
