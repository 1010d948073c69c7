package marketlxc

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckPublicDirRefusesEscapes tries to leave the public root every
// way a PUBLIC_DIR can: relative paths, '..', the root itself, a sibling
// sharing its prefix, control characters and symbolic links (to the
// directory itself and to an ancestor of a directory not made yet).
func TestCheckPublicDirRefusesEscapes(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "public")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{root, outside, filepath.Join(root, "ok")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
		t.Fatal(err)
	}
	for _, good := range []string{root + "/ok", root + "/new/market", root + "/a.b_c-d"} {
		if _, err := checkPublicDir(root, good); err != nil {
			t.Errorf("checkPublicDir(%q): %v", good, err)
		}
	}
	bad := map[string]string{
		"relative":              "public/ok",
		"dot-dot":               root + "/../outside",
		"dot-dot inside":        root + "/ok/../../outside",
		"dot":                   root + "/./ok",
		"trailing slash":        root + "/ok/",
		"double slash":          root + "//ok",
		"the root itself":       root,
		"a sibling with prefix": root + "-evil/x",
		"control character":     root + "/ok\n",
		"symlink":               root + "/link",
		"below a symlink":       root + "/link/new",
		"empty":                 "",
		"slash":                 "/",
	}
	for what, dir := range bad {
		if got, err := checkPublicDir(root, dir); err == nil {
			t.Errorf("%s: checkPublicDir(%q) = %q, want an error", what, dir, got)
		}
	}
	if _, err := checkPublicDir("", root+"/ok"); err == nil || !strings.Contains(err.Error(), EnvPublicRoot) {
		t.Errorf("no public root: %v", err)
	}
	// publicDir makes the directory and checks it again.
	s := &Service{cfg: Config{PublicRoot: root}}
	dir, err := s.publicDir(root + "/made/here")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Errorf("publicDir did not make %s: %v", dir, err)
	}
	if _, err := s.publicDir(root + "/link/x"); err == nil {
		t.Error("publicDir followed a symbolic link out of the root")
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); err == nil {
		t.Error("publicDir made a directory outside the root")
	}
}
