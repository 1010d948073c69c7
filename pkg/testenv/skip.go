package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// Skip skips the test and prints why on stderr as well: `go test` without
// -v hides a skipped test's log, and a skip that nobody sees reads as a
// pass in CI's output.
func Skip(t testing.TB, format string, args ...any) {
	t.Helper()
	reason := fmt.Sprintf(format, args...)
	fmt.Fprintf(os.Stderr, "SKIP %s: %s\n", t.Name(), reason)
	t.Skip(reason)
}

// RepoFile returns the path of rel, a file below the repository root that
// a tool fetches or builds (bin/kernel/vmlinuz), and skips the test,
// saying how to get it, when it is missing.
func RepoFile(t testing.TB, rel, how string) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, rel)
	if _, err := os.Stat(p); err != nil {
		Skip(t, "%s is missing (%v): %s", rel, err, how)
	}
	return p
}
