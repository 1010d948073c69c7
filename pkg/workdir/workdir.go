// Package workdir gives a worker process its own scratch directory that
// outlives a crash only until the next worker starts: the directory is held
// under an flock for the life of the process, and directories whose lock
// nobody holds — left by a worker killed mid-job, which runs no deferred
// cleanup — are removed when another worker claims its own.
package workdir

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// Claim makes this process's own directory under root, named prefix plus a
// random suffix, and holds an flock on it until release is called. It first
// removes the directories with the same prefix that no live process locks.
// Several workers may share root; a live one's directory is never touched.
func Claim(root, prefix string) (dir string, release func(), err error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", nil, fmt.Errorf("temp dir %s: %w", root, err)
	}
	sweepDead(root, prefix)
	dir, err = os.MkdirTemp(root, prefix+"*")
	if err != nil {
		return "", nil, fmt.Errorf("work dir in %s: %w", root, err)
	}
	lock, err := os.Open(dir)
	if err != nil {
		return "", nil, err
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return "", nil, fmt.Errorf("lock work dir %s: %w", dir, err)
	}
	release = func() {
		os.RemoveAll(dir)
		lock.Close()
	}
	return dir, release, nil
}

// sweepDead removes the directories with prefix that no live process locks.
func sweepDead(root, prefix string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		path := filepath.Join(root, e.Name())
		f, err := os.Open(path)
		if err != nil {
			continue
		}
		if syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) == nil {
			os.RemoveAll(path)
		}
		f.Close()
	}
}
