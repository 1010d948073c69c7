package guestinit

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// guestInit is cmd/slipway-init as the builder ships it: static,
// stripped.
var guestInit = testenv.Binary{Pkg: "./services/builder/cmd/slipway-init", Static: true}

func TestMain(m *testing.M) {
	if os.Getenv(netnsHelperEnv) != "" {
		os.Exit(netnsHelper())
	}
	code := m.Run()
	guestInit.Remove()
	os.Exit(code)
}

// buildInit builds guestInit on first use and returns its path.
func buildInit(t *testing.T) string {
	t.Helper()
	bin := guestInit.Path(t)
	if fi, err := os.Stat(bin); err == nil {
		t.Logf("slipway-init: %d bytes", fi.Size())
	}
	return bin
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, mode)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
	must(t, os.Chmod(dst, mode))
}

func writeFile(t *testing.T, p, content string, mode os.FileMode) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(p), 0o755))
	must(t, os.WriteFile(p, []byte(content), mode))
}

// busyboxRoot makes a rootfs with /bin/busybox, the init and a config.
func busyboxRoot(t *testing.T, config string) string {
	t.Helper()
	root := t.TempDir()
	must(t, os.Chmod(root, 0o755))
	copyFile(t, "/bin/busybox", filepath.Join(root, "bin/busybox"), 0o755)
	copyFile(t, buildInit(t), filepath.Join(root, InitPath), 0o755)
	writeFile(t, filepath.Join(root, ConfigPath), config, 0o644)
	return root
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		testenv.Skip(t, "skipped: needs root (%s); run the tests as root, as CI does", why)
	}
}

// lines splits console output into trimmed lines (the serial console
// writes CRLF).
func lines(out string) []string {
	var ls []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		ls = append(ls, strings.TrimRight(sc.Text(), "\r"))
	}
	return ls
}

// indexOf returns the index of the first line starting with prefix, or -1.
func indexOf(ls []string, prefix string) int {
	for i, l := range ls {
		if strings.HasPrefix(l, prefix) {
			return i
		}
	}
	return -1
}

// repoRoot walks up from the package directory to the go.work file.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	must(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.work")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.work above the package directory")
		}
		dir = parent
	}
}
