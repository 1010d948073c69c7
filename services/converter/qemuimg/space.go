package qemuimg

import (
	"errors"
	"fmt"
	"syscall"

	"github.com/slipway/slipway/services/converter/inspect"
)

// ErrNoSpace marks a directory without room for the work asked.
var ErrNoSpace = errors.New("not enough free space")

// FreeSpace returns the bytes available to an unprivileged user in the file
// system holding dir.
func FreeSpace(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// EnsureFree fails with ErrNoSpace unless dir has need bytes free.
func EnsureFree(dir string, need int64) error {
	free, err := FreeSpace(dir)
	if err != nil {
		return err
	}
	if free < need {
		return fmt.Errorf("%w: need %s in %s, %s free", ErrNoSpace,
			inspect.HumanBytes(uint64(max(need, 0))), dir, inspect.HumanBytes(uint64(max(free, 0))))
	}
	return nil
}
