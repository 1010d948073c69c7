package testenv

import (
	"fmt"
	"os"
	"os/exec"
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
	return repoFile(t, rel, how, func(format string, args ...any) { Skip(t, format, args...) })
}

// NeedRepoFile is RepoFile for a file the test cannot do without: it
// fails the test, saying how to get the file, rather than skipping it.
func NeedRepoFile(t testing.TB, rel, how string) string {
	t.Helper()
	return repoFile(t, rel, how, t.Fatalf)
}

func repoFile(t testing.TB, rel, how string, missing func(format string, args ...any)) string {
	t.Helper()
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(root, rel)
	if _, err := os.Stat(p); err != nil {
		missing("%s is missing (%v): %s", rel, err, how)
	}
	return p
}

// Program returns the path of the program name on PATH and skips the
// test, saying how to get it, when it is not there.
func Program(t testing.TB, name, how string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Skip(t, "%s is not installed (%v): %s", name, err, how)
	}
	return p
}

// ProgramOrCI is Program for a program that `make deps` installs: in CI
// (CI=true, where make deps ran first) a missing one fails the test
// instead of skipping it, so that a broken install step cannot pass as a
// skip.
func ProgramOrCI(t testing.TB, name, how string) string {
	t.Helper()
	if os.Getenv("CI") == "true" {
		if _, err := exec.LookPath(name); err != nil {
			t.Fatalf("%s is not installed in CI (%v): %s", name, err, how)
		}
	}
	return Program(t, name, how)
}
