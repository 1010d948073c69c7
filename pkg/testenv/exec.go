package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Script writes body, a shell script starting with its #! line, as the
// executable file name in a new temporary directory, and returns its path:
// a stand-in for a program a test wants to watch or hold.
func Script(t testing.TB, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Exec runs the program name with args and returns what it wrote to
// stdout and stderr; when it fails, the test fails with its command line
// and that output.
func Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// GoBuild builds pkg, a package of this repository named from its root
// ("./services/converter/cmd/converter"), into the file out. static builds
// it as Slipway ships its guest binaries: without cgo, trimmed and
// stripped. It takes no testing.TB, so TestMain can use it too.
func GoBuild(pkg, out string, static bool) error {
	root, err := RepoRoot()
	if err != nil {
		return err
	}
	args := []string{"build", "-o", out}
	if static {
		args = append(args, "-trimpath", "-ldflags=-s -w")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	if static {
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}
