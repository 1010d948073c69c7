package testenv

import (
	"fmt"
	"os"
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
