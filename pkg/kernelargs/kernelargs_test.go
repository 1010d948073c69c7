package kernelargs

import (
	"slices"
	"testing"
)

func TestSplit(t *testing.T) {
	for line, want := range map[string][]string{
		` a  b="c d" "e f"  `:           {"a", "b=c d", "e f"},
		"console=ttyS0\tinit=/bin/sh\n": {"console=ttyS0", "init=/bin/sh"},
		`init="/bin/sh -x" ro`:          {"init=/bin/sh -x", "ro"},
		`""`:                            {""},
		"":                              nil,
	} {
		if got := Split(line); !slices.Equal(got, want) {
			t.Errorf("Split(%q) = %q, want %q", line, got, want)
		}
	}
}
