package servicemain_test

import (
	"testing"

	"github.com/slipway/slipway/pkg/netguard"
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

// The stack's guard replaces the service's own only when the stack has one.
func TestStackGuardOr(t *testing.T) {
	own, stacks := &netguard.Policy{}, &netguard.Policy{}
	if got := (servicemain.Stack{}).GuardOr(own); got != own {
		t.Errorf("without a stack guard: %p, want the service's %p", got, own)
	}
	if got := (servicemain.Stack{Guard: stacks}).GuardOr(own); got != stacks {
		t.Errorf("with a stack guard: %p, want the stack's %p", got, stacks)
	}
}

// The stack's user replaces the service's own only when the stack has one.
func TestStackUserOr(t *testing.T) {
	if got := (servicemain.Stack{}).UserOr("oneadmin"); got != "oneadmin" {
		t.Errorf("without a stack user: %q", got)
	}
	if got := (servicemain.Stack{User: "alice"}).UserOr("oneadmin"); got != "alice" {
		t.Errorf("with a stack user: %q", got)
	}
}
