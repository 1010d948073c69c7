package diskspace

import (
	"errors"
	"strings"
	"syscall"
	"testing"
)

func TestEnsure(t *testing.T) {
	dir := t.TempDir()
	free, err := Free(dir)
	if err != nil || free <= 0 {
		t.Fatalf("Free = %d, %v", free, err)
	}
	if err := Ensure(dir, 1); err != nil {
		t.Errorf("Ensure(1 byte) = %v", err)
	}
	err = Ensure(dir, free+1<<50)
	var e *Error
	if !errors.As(err, &e) || !errors.Is(err, ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) || e.Dir != dir ||
		!strings.Contains(err.Error(), "not enough free space: need 1.0 PiB") {
		t.Fatalf("Ensure(more than there is) = %v", err)
	}
	if _, err := Free("/nonexistent/dir"); err == nil {
		t.Error("Free of a missing directory")
	}
}
