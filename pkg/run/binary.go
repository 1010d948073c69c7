package run

import (
	"os"
	"path/filepath"
)

// FindBinary finds name, a binary that ships with Slipway's own: beside
// the running executable, else bin/<name> under the working directory (a
// checkout after `make build`). It returns the first candidate when none
// exists, so that an error can name a path.
func FindBinary(name string) string {
	var candidates []string
	if exe, err := os.Executable(); err == nil {
		candidates = append(candidates, filepath.Join(filepath.Dir(exe), name))
	}
	if wd, err := os.Getwd(); err == nil {
		candidates = append(candidates, filepath.Join(wd, "bin", name))
	}
	for _, c := range candidates {
		if fi, err := os.Stat(c); err == nil && fi.Mode().IsRegular() {
			return c
		}
	}
	if len(candidates) == 0 {
		return filepath.Join("bin", name)
	}
	return candidates[0]
}
