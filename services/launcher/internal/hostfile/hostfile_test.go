package hostfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

func TestRegular(t *testing.T) {
	dir := t.TempDir()
	file := testenv.WriteFile(t, filepath.Join(dir, "disk"), "x")
	link := filepath.Join(dir, "link")
	if err := os.Symlink(file, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, link} {
		if err := Regular(p); err != nil {
			t.Errorf("Regular(%s) = %v, want nil", p, err)
		}
	}
	if err := Regular(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("Regular(dir) = %v, want not a regular file", err)
	}
	if err := Regular(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Regular(missing) = %v, want fs.ErrNotExist", err)
	}
}
