package guestinit

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultPath is the PATH a container gets when its config sets none, as in
// Docker.
const DefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// ExitError is a failure before the container's process ran, with the exit
// code the init reports for it.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

// Argv composes the process's argv with OCI semantics: ENTRYPOINT followed by
// CMD, where override, when not empty, replaces CMD.
func Argv(entrypoint, cmd, override []string) ([]string, error) {
	if len(override) > 0 {
		cmd = override
	}
	argv := append(append([]string{}, entrypoint...), cmd...)
	if len(argv) == 0 || argv[0] == "" {
		return nil, &ExitError{ExitInitError, errors.New("no command: the container config has neither entrypoint nor cmd")}
	}
	return argv, nil
}

// MergeEnv merges KEY=value lists: a later list's value replaces an earlier
// one in place, new keys are appended in order.
func MergeEnv(lists ...[]string) []string {
	var out []string
	index := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, _, _ := strings.Cut(kv, "=")
			if i, ok := index[k]; ok {
				out[i] = kv
				continue
			}
			index[k] = len(out)
			out = append(out, kv)
		}
	}
	return out
}

// Getenv returns key's value in a KEY=value list.
func Getenv(env []string, key string) (string, bool) {
	for i := len(env) - 1; i >= 0; i-- {
		if k, v, ok := strings.Cut(env[i], "="); ok && k == key {
			return v, true
		}
	}
	return "", false
}

// ProcessEnv is the container process's environment: the config's ENV over
// Docker's defaults (PATH, HOSTNAME), with HOME from the user when unset.
func ProcessEnv(configEnv []string, u *User, hostname string) []string {
	defaults := []string{"PATH=" + DefaultPath}
	if hostname != "" {
		defaults = append(defaults, "HOSTNAME="+hostname)
	}
	env := MergeEnv(defaults, configEnv)
	if _, ok := Getenv(env, "HOME"); !ok {
		home := u.Home
		if home == "" {
			home = "/"
		}
		env = append(env, "HOME="+home)
	}
	return env
}

// LookPath finds file the way execvp does, with the container's PATH, in the
// filesystem under root (symlinks resolved inside root). A name holding a
// slash is taken relative to cwd. It returns the path inside root.
func LookPath(root, file, pathEnv, cwd string) (string, error) {
	if strings.Contains(file, "/") {
		p := inRoot(cwd, file)
		return p, checkExecutable(root, p, file)
	}
	var firstErr error
	for _, dir := range filepath.SplitList(pathEnv) {
		p := inRoot(cwd, path.Join(dir, file))
		err := checkExecutable(root, p, file)
		if err == nil {
			return p, nil
		}
		var xe *ExitError
		if firstErr == nil && errors.As(err, &xe) && xe.Code == ExitCannotExec {
			firstErr = err
		}
	}
	if firstErr != nil {
		return "", firstErr
	}
	return "", &ExitError{ExitNotFound, fmt.Errorf("%q: executable file not found in PATH %q", file, pathEnv)}
}

func inRoot(cwd, p string) string {
	if !path.IsAbs(p) {
		p = path.Join("/", cwd, p)
	}
	return path.Clean(p)
}

func checkExecutable(root, p, name string) error {
	host, err := ResolveInRoot(root, p)
	if err == nil {
		var fi os.FileInfo
		if fi, err = os.Stat(host); err == nil {
			if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
				return &ExitError{ExitCannotExec, fmt.Errorf("%q (%s): not an executable file (%s)", name, p, fi.Mode())}
			}
			return nil
		}
	}
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return &ExitError{ExitNotFound, fmt.Errorf("%q: %s does not exist", name, p)}
	}
	return &ExitError{ExitCannotExec, fmt.Errorf("%q: %w", name, err)}
}

// ResolveInRoot maps the absolute path p of the filesystem rooted at root to
// a host path, following symlinks as if root were "/": absolute targets and
// ".." never leave root. The path need not exist.
func ResolveInRoot(root, p string) (string, error) {
	resolved := "/"
	todo := p
	for hops := 0; todo != ""; {
		var comp string
		comp, todo, _ = strings.Cut(todo, "/")
		switch comp {
		case "", ".":
			continue
		case "..":
			resolved = path.Dir(resolved)
			continue
		}
		next := path.Join(resolved, comp)
		fi, err := os.Lstat(filepath.Join(root, next))
		if errors.Is(err, os.ErrNotExist) {
			// Nothing below a missing entry can be a symlink.
			return filepath.Join(root, path.Join(next, todo)), nil
		}
		if err != nil {
			return "", err
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			resolved = next
			continue
		}
		if hops++; hops > 40 {
			return "", fmt.Errorf("%s: %w", p, syscall.ELOOP)
		}
		target, err := os.Readlink(filepath.Join(root, next))
		if err != nil {
			return "", err
		}
		if path.IsAbs(target) {
			resolved = "/"
		}
		todo = target + "/" + todo
	}
	return filepath.Join(root, resolved), nil
}

// MkdirAllInRoot creates the directory p and its missing parents in the
// filesystem under root, following existing symlinks inside root.
func MkdirAllInRoot(root, p string, mode os.FileMode) error {
	cur := "/"
	for _, comp := range strings.Split(path.Clean("/"+p), "/") {
		if comp == "" {
			continue
		}
		cur = path.Join(cur, comp)
		host, err := ResolveInRoot(root, cur)
		if err != nil {
			return err
		}
		if err := os.Mkdir(host, mode); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}
