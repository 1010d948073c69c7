package servicemain_test

import (
	"testing"

	"github.com/slipway/slipway/pkg/servicemain"
)

// The stack keeps its files under its data directory where a variable
// does not say otherwise, and a variable still wins.
func TestStackDefaults(t *testing.T) {
	st := servicemain.Stack{DataDir: "/data"}
	if got := st.WorkDir(""); got != "/data/work" {
		t.Errorf("WorkDir(\"\") = %q", got)
	}
	if got := st.WorkDir("/scratch"); got != "/scratch" {
		t.Errorf("WorkDir(\"/scratch\") = %q", got)
	}
	if got := (servicemain.Stack{}).WorkDir(""); got != "" {
		t.Errorf("a binary's WorkDir = %q, want the worker's own default", got)
	}
	if got := (servicemain.Stack{}).Path("luks.kek"); got != "" {
		t.Errorf("a binary's Path = %q: it must not invent a key file", got)
	}
}
