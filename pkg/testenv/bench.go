package testenv

import (
	"slices"
	"syscall"
	"testing"
	"time"
)

// Interleave runs ours and bare once each per round of b.Loop, swapping
// which goes first every round, so page-cache warmth favours neither.
func Interleave(b *testing.B, ours, bare func()) {
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			ours()
			bare()
		} else {
			bare()
			ours()
		}
	}
}

// Median is the middle one of d (the upper middle for an even count).
func Median(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)/2]
}

// ProcessCPU is the user and system time this process has used, every
// thread included.
func ProcessCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
