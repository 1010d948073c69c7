package catalog

import (
	"slices"
	"strings"
	"testing"

	"github.com/slipway/slipway/schemas"
)

// TestFlowDeclarations checks the declarations the workflow core runs:
// every command a phase sends and every event it waits for is in the
// contract, every phase has a deadline, and kinds and phases are unique.
func TestFlowDeclarations(t *testing.T) {
	s := New(nil, nil, Config{})
	flows := s.sagaFlows()
	s.declare(flows...)
	if len(s.flows) != len(flows) {
		t.Fatalf("%d flows declared, %d kinds", len(flows), len(s.flows))
	}
	lookup := func(kind, key string) bool {
		service, name, ok := strings.Cut(key, ".")
		if !ok {
			return false
		}
		_, found := schemas.Lookup(kind, service, name)
		return found
	}
	for _, f := range flows {
		if len(f.phases) == 0 || f.fail == nil || f.what == "" {
			t.Errorf("flow %s: phases, fail and what are required", f.kind)
		}
		seen := map[string]bool{}
		for _, p := range f.phases {
			if seen[string(p.name)] {
				t.Errorf("flow %s: phase %s twice", f.kind, p.name)
			}
			seen[string(p.name)] = true
			if p.deadline <= 0 {
				t.Errorf("flow %s, phase %s: no deadline", f.kind, p.name)
			}
			for _, c := range p.commands {
				if !lookup(schemas.KindCommand, c) {
					t.Errorf("flow %s, phase %s sends %s, which has no schema", f.kind, p.name, c)
				}
			}
			for k := range p.on {
				if !lookup(schemas.KindEvent, k) {
					t.Errorf("flow %s, phase %s waits for %s, which has no schema", f.kind, p.name, k)
				}
			}
		}
		for k := range f.unclaimed {
			if !lookup(schemas.KindEvent, k) {
				t.Errorf("flow %s handles %s unclaimed, which has no schema", f.kind, k)
			}
		}
	}
}

// TestEventKeys: the events the catalog consumes are derived from the
// declarations; these are the reports its sagas wait for, and the
// launcher's answers to an OVA's template.
func TestEventKeys(t *testing.T) {
	s := New(nil, nil, Config{})
	s.declare(s.sagaFlows()...)
	want := []string{"builder.built", "builder.failed", "converter.converted", "converter.failed",
		"converter.ova-unpacked", "crypto-luks.encrypted", "crypto-luks.failed", "crypto-luks.slots-changed",
		"launcher.failed", "launcher.template-created", "market-dockerhub.failed", "market-dockerhub.resolved"}
	if got := s.eventKeys(); !slices.Equal(got, want) {
		t.Fatalf("event keys %v, want %v", got, want)
	}
}
