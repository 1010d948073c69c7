package run

import (
	"os"
	"path/filepath"
	"testing"
)

// FindBinary prefers the binary beside the executable, then bin/ under the
// working directory, and names the first candidate when there is none.
func TestFindBinary(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	wd := t.TempDir()
	t.Chdir(wd)
	const name = "slipway-test-companion"
	beside := filepath.Join(filepath.Dir(exe), name)
	if got := FindBinary(name); got != beside {
		t.Errorf("none: %q, want %q", got, beside)
	}
	if err := os.Mkdir(filepath.Join(wd, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	inBin := filepath.Join(wd, "bin", name)
	if err := os.Mkdir(inBin, 0o755); err != nil { // not a regular file
		t.Fatal(err)
	}
	if got := FindBinary(name); got != beside {
		t.Errorf("a directory: %q, want %q", got, beside)
	}
	if err := os.Remove(inBin); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(inBin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	if got := FindBinary(name); got != inBin {
		t.Errorf("in bin: %q, want %q", got, inBin)
	}
}
