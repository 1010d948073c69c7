// Package diskspace tells how much room a directory's file system has left
// and refuses work that would not fit, before it is written: a worker that
// runs out of disk half way leaves a partial file and a retry that fails the
// same way.
package diskspace

import (
	"errors"
	"fmt"
	"syscall"
)

// ErrNoSpace marks work refused for want of room (errors.Is also matches
// syscall.ENOSPC, so callers that retry a full disk retry this too).
var ErrNoSpace = errors.New("not enough free space")

// Error is a refusal: Need bytes were asked of Dir, Free were available.
type Error struct {
	Dir        string
	Need, Free int64
}

func (e *Error) Error() string {
	return fmt.Sprintf("%v: need %s in %s, %s free", ErrNoSpace, human(e.Need), e.Dir, human(e.Free))
}

// Is matches ErrNoSpace and syscall.ENOSPC.
func (e *Error) Is(target error) bool { return target == ErrNoSpace || target == syscall.ENOSPC }

// Free returns the bytes available to an unprivileged writer in the file
// system holding dir.
func Free(dir string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("free space of %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}

// Ensure fails with an *Error unless dir has need bytes free.
func Ensure(dir string, need int64) error {
	free, err := Free(dir)
	if err != nil {
		return err
	}
	if free < need {
		return &Error{Dir: dir, Need: need, Free: free}
	}
	return nil
}

func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", max(n, 0))
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}
