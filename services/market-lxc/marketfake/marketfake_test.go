package marketfake_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/market-lxc/marketfake"
	"github.com/ulikunitz/xz"
)

func entries(t *testing.T, r io.Reader) map[string]*tar.Header {
	t.Helper()
	out := map[string]*tar.Header{}
	testenv.ReadTar(t, r, func(h *tar.Header, _ io.Reader) { out[h.Name] = h })
	return out
}

func TestBusyboxRootfsIsRealAndCompressed(t *testing.T) {
	xzData := marketfake.BusyboxTarXz(t, "debian", "TOKEN-abc123")
	xr, err := xz.NewReader(bytes.NewReader(xzData))
	if err != nil {
		t.Fatal(err)
	}
	es := entries(t, xr)
	for _, name := range []string{"bin/busybox", "bin/sh", "sbin/init", "etc/os-release", "proc/", "dev/"} {
		if es[name] == nil {
			t.Errorf("rootfs lacks %s", name)
		}
	}
	if es["bin/sh"].Linkname != "busybox" || es["sbin/init"].Mode&0o111 == 0 {
		t.Errorf("sh → %q, init mode %o", es["bin/sh"].Linkname, es["sbin/init"].Mode)
	}
	gr, err := gzip.NewReader(bytes.NewReader(marketfake.BusyboxTarGz(t, "debian", "TOKEN-abc123")))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries(t, gr)) != len(es) {
		t.Error("tar.gz and tar.xz differ")
	}
	for _, bad := range []string{"a b", "a;reboot", "$(x)", "a\nb", ""} {
		if !fails(func(tb testing.TB) { marketfake.BusyboxRootfs(tb, "debian", bad) }) {
			t.Errorf("token %q accepted into the init script", bad)
		}
	}
}

// TestInitPrintsTheToken runs the rootfs's /sbin/init with its own busybox
// (up to the poweroff, which the unprivileged sandbox refuses) — extracted
// with the system tar, as a user would.
func TestInitPrintsTheToken(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "rootfs.tar.xz")
	if err := os.WriteFile(path, marketfake.BusyboxTarXz(t, "debian", "TOKEN-run42"), 0o600); err != nil {
		t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("tar", "-xJf", path, "-C", root).CombinedOutput(); err != nil {
		testenv.Skip(t, "skipped: system tar cannot extract .tar.xz here: %v %s", err, out)
	}
	script, err := os.ReadFile(filepath.Join(root, "sbin/init"))
	if err != nil {
		t.Fatal(err)
	}
	// Run the script's echo line only: the mount and poweroff lines need a VM.
	var echo string
	for _, l := range strings.Split(string(script), "\n") {
		if strings.HasPrefix(l, "echo ") {
			echo = l
		}
	}
	out, err := exec.Command(filepath.Join(root, "bin/busybox"), "sh", "-c", echo).Output()
	if err != nil || strings.TrimSpace(string(out)) != "TOKEN-run42" {
		t.Fatalf("init's echo printed %q, %v", out, err)
	}
	osr, _ := os.ReadFile(filepath.Join(root, "etc/os-release"))
	if !strings.Contains(string(osr), "ID=debian\n") {
		t.Errorf("os-release = %q", osr)
	}
}

// fails reports whether f fails the test it is given.
func fails(f func(testing.TB)) bool {
	ft := &fakeT{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f(ft)
	}()
	<-done
	return ft.failed
}

type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Fatalf(string, ...any) { f.failed = true; runtime.Goexit() }
func (f *fakeT) Skipf(string, ...any)  { runtime.Goexit() }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Cleanup(func())        {}
func (f *fakeT) TempDir() string       { return os.TempDir() }
