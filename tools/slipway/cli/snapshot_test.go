package cli

import (
	"strings"
	"testing"

	"github.com/slipway/slipway/tools/slipway/render"
)

// TestSnapshotID: SNAP is an ID, or the name of one of the tree's
// snapshots; a name the tree lacks says so.
func TestSnapshotID(t *testing.T) {
	tree := []render.Snapshot{{ID: 0, Name: "before"}, {ID: 3, Name: "after"}}
	for ref, want := range map[string]int64{"0": 0, "3": 3, "7": 7, "after": 3, "before": 0} {
		if got, err := snapshotID(tree, ref, renderIDName); err != nil || got != want {
			t.Errorf("%q: %d %v, want %d", ref, got, err, want)
		}
	}
	if _, err := snapshotID(tree, "nope", renderIDName); err == nil || !strings.Contains(err.Error(), `no snapshot named "nope"`) {
		t.Errorf("a missing name: %v", err)
	}
}
