package guestinit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// AddAuthorizedKeys appends the keys (one per line, as SSH_PUBLIC_KEY holds
// them) that are not there yet to <home>/.ssh/authorized_keys in the
// filesystem under root, creating .ssh 0700 and the file 0600, both owned by
// uid:gid as sshd requires.
func AddAuthorizedKeys(root, home string, uid, gid uint32, keys string) error {
	if home == "" {
		home = "/root"
	}
	if err := MkdirAllInRoot(root, home, 0o755); err != nil {
		return fmt.Errorf("ssh keys: home %s: %w", home, err)
	}
	dir, err := ResolveInRoot(root, path.Join(home, ".ssh"))
	if err != nil {
		return fmt.Errorf("ssh keys: %s/.ssh: %w", home, err)
	}
	if err := ensureOwned(dir, true, uid, gid, 0o700); err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	file := filepath.Join(dir, "authorized_keys")
	have, err := readLines(file)
	if err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	var add strings.Builder
	for _, k := range strings.Split(keys, "\n") {
		k = strings.TrimSpace(k)
		if k == "" || have[k] {
			continue
		}
		have[k] = true
		add.WriteString(k + "\n")
	}
	if err := ensureOwned(file, false, uid, gid, 0o600); err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	f, err := os.OpenFile(file, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return fmt.Errorf("ssh keys: %w", err)
	}
	if err := ensureNewline(f); err != nil {
		f.Close()
		return fmt.Errorf("ssh keys: %s: %w", file, err)
	}
	if _, err := f.WriteString(add.String()); err != nil {
		f.Close()
		return fmt.Errorf("ssh keys: %s: %w", file, err)
	}
	return f.Close()
}

// ensureOwned creates a directory or an empty file at p if missing (O_NOFOLLOW
// semantics: a symlink there is refused) and sets its owner and mode.
func ensureOwned(p string, dir bool, uid, gid uint32, mode os.FileMode) error {
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist) && dir:
		err = os.Mkdir(p, mode)
	case errors.Is(err, os.ErrNotExist):
		var f *os.File
		if f, err = os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode); err == nil {
			err = f.Close()
		}
	case err == nil && fi.Mode()&os.ModeSymlink != 0:
		return fmt.Errorf("%s is a symlink; refusing to follow it", p)
	}
	if err != nil {
		return err
	}
	if err := os.Lchown(p, int(uid), int(gid)); err != nil {
		return err
	}
	return os.Chmod(p, mode)
}

func readLines(file string) (map[string]bool, error) {
	lines := map[string]bool{}
	f, err := os.Open(file)
	if errors.Is(err, os.ErrNotExist) {
		return lines, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		lines[strings.TrimSpace(sc.Text())] = true
	}
	return lines, sc.Err()
}

// ensureNewline adds a newline when the file's last byte is not one, so an
// appended key never joins the previous line.
func ensureNewline(f *os.File) error {
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return err
	}
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, fi.Size()-1); err != nil {
		return err
	}
	if b[0] != '\n' {
		_, err = f.WriteString("\n")
	}
	return err
}
