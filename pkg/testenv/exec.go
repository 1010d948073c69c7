package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/slipway/slipway/pkg/run"
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

// ToolCommand is exec.Command with the empty environment Slipway gives its
// children (run.ChildEnv): a tool a test runs sees none of the test's own
// variables (S3 keys, credentials).
func ToolCommand(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = run.ChildEnv()
	return cmd
}

// Exec runs the program name with args and returns what it wrote to
// stdout and stderr; when it fails, the test fails with its command line
// and that output.
func Exec(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := ToolCommand(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Compress compresses data with tool (xz, gzip, zstd, bzip2), run as its
// users do (`tool -c`), and returns what it wrote.
func Compress(t testing.TB, tool string, data []byte) []byte {
	t.Helper()
	cmd := ToolCommand(tool, "-c", "-q")
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s -c: %v", tool, err)
	}
	return out
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

// Build builds pkg, as GoBuild does, into a temporary directory of the
// test and returns the program's path, named after the package's
// directory.
func Build(t testing.TB, pkg string, static bool) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), path.Base(pkg))
	if err := GoBuild(pkg, bin, static); err != nil {
		t.Fatal(err)
	}
	return bin
}

// Binary is a program of this repository that the tests of a package
// build once, when the first of them needs it, into a temporary
// directory. Declare it as a package variable and Remove it in TestMain
// after m.Run.
type Binary struct {
	Pkg    string // named from the repository's root, as GoBuild takes it
	Static bool   // built as GoBuild's static

	once sync.Once
	dir  string
	path string
	err  error
}

// Build builds b on its first call and returns its path, named after the
// package's directory. It takes no testing.TB, so TestMain can use it.
func (b *Binary) Build() (string, error) {
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "slipway-test-bin-"); b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, path.Base(b.Pkg))
		if b.err = GoBuild(b.Pkg, b.path, b.Static); b.err != nil {
			b.Remove()
		}
	})
	return b.path, b.err
}

// Path is Build failing the test when the build fails.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	p, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Remove removes what Build built.
func (b *Binary) Remove() {
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

// Run builds b, stores its path in *path, runs tests (m.Run, or
// RunWithMinIO around it) and removes b. A failed build fails the package
// and returns 1. Use it from TestMain, for tests that read b's path from a
// package variable: os.Exit(bin.Run(&path, m.Run)).
func (b *Binary) Run(path *string, tests func() int) int {
	p, err := b.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer b.Remove()
	*path = p
	return tests()
}
