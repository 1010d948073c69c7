package marketlxc

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// PublicRootDir is the public root's name in a stack's data directory
// (`slipway up`), when SLIPWAY_MARKET_PUBLIC_ROOT does not say.
const PublicRootDir = "market-public"

// checkPublicDir is the one check of an http marketplace's PUBLIC_DIR (a
// template's value, an administrator's, but still never trusted as a
// path): it must be an absolute, clean path strictly below root (the
// service's SLIPWAY_MARKET_PUBLIC_ROOT), and, where it exists, stay below
// root once symbolic links are followed. It returns the directory.
func checkPublicDir(root, dir string) (string, error) {
	if root == "" {
		return "", fmt.Errorf("PUBLIC_DIR %q: this market-lxc has no public root (%s): it cannot publish into a directory", dir, EnvPublicRoot)
	}
	if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
		return "", fmt.Errorf("PUBLIC_DIR %q: want an absolute path without '.', '..', repeated or trailing '/'", dir)
	}
	if strings.ContainsFunc(dir, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return "", fmt.Errorf("PUBLIC_DIR %q: control characters are not allowed", dir)
	}
	if !below(filepath.Clean(root), dir) {
		return "", fmt.Errorf("PUBLIC_DIR %s is not below the public root %s (%s)", dir, root, EnvPublicRoot)
	}
	realRoot, err := filepath.EvalSymlinks(root)
	if errors.Is(err, os.ErrNotExist) {
		return dir, nil // nothing below it exists yet either
	}
	if err != nil {
		return "", fmt.Errorf("public root %s: %w", root, err)
	}
	real, err := resolveExisting(dir)
	if err != nil {
		return "", fmt.Errorf("PUBLIC_DIR %s: %w", dir, err)
	}
	if !below(realRoot, real) {
		return "", fmt.Errorf("PUBLIC_DIR %s leads to %s through a symbolic link, outside the public root %s", dir, real, realRoot)
	}
	return dir, nil
}

// below reports whether path is strictly below dir (both clean).
func below(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && rel != ".." && !strings.HasPrefix(rel, "../") && !filepath.IsAbs(rel)
}

// resolveExisting follows the symbolic links of the longest existing
// ancestor of path and appends the rest, so that a link anywhere on the
// way is seen even before the directory is made.
func resolveExisting(path string) (string, error) {
	var rest []string
	for p := path; ; p = filepath.Dir(p) {
		real, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, os.ErrNotExist) || p == filepath.Dir(p) {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
	}
}

// publicDir makes PUBLIC_DIR dir (and the root) if needed and checks it
// again once it exists, just before a publish or a delete writes in it.
func (s *Service) publicDir(dir string) (string, error) {
	dir, err := checkPublicDir(s.cfg.PublicRoot, dir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("PUBLIC_DIR: %w", err)
	}
	return checkPublicDir(s.cfg.PublicRoot, dir)
}
