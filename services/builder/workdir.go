package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// workDirPrefix names the per-process directories under Config.TempDir.
const workDirPrefix = "slipway-builder-"

// claimWorkDir makes this process's own work directory under root and
// holds an flock on it for as long as the process lives. A builder killed
// mid-job runs no deferred cleanup, so directories whose lock nobody holds
// belong to dead builders and are removed here; a live one's never is.
func claimWorkDir(root string) (dir string, release func(), err error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", nil, fmt.Errorf("temp dir %s: %w", root, err)
	}
	sweepDeadWorkDirs(root)
	dir, err = os.MkdirTemp(root, workDirPrefix+"*")
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

// sweepDeadWorkDirs removes the work directories no live builder locks.
func sweepDeadWorkDirs(root string) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), workDirPrefix) {
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
