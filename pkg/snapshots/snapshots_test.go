package snapshots

import (
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/schemas"
)

func build(t *testing.T, names ...string) Tree {
	t.Helper()
	var tr Tree
	for _, n := range names {
		var err error
		if tr, _, err = tr.Add(0, n, time.Unix(1700000000, 0), 1<<20); err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestTreeAddRevertDelete(t *testing.T) {
	tr := build(t, "a", "b")
	if tr.Active() != 1 || tr[1].Parent != 0 || tr[0].Parent != -1 {
		t.Fatalf("a chain a<-b with b active, got %+v", tr)
	}
	tr, err := tr.Revert(0)
	if err != nil || tr.Active() != 0 {
		t.Fatalf("revert to 0: %v %+v", err, tr)
	}
	tr, c, err := tr.Add(0, "c", time.Now(), 0)
	if err != nil || c.Parent != 0 || c.ID != 2 || tr.Active() != 2 {
		t.Fatalf("c is a second child of a: %v %+v", err, tr)
	}
	if err := tr.CheckDelete(2); err == nil || !strings.Contains(err.Error(), "is active") {
		t.Fatalf("deleting the active snapshot: %v", err)
	}
	if err := tr.CheckDelete(0); err == nil || !strings.Contains(err.Error(), "has children (1, 2)") {
		t.Fatalf("deleting a parent: %v", err)
	}
	if err := tr.CheckDelete(7); err == nil || !strings.Contains(err.Error(), "snapshot 7 does not exist (snapshots: 0, 1, 2)") {
		t.Fatalf("deleting a missing snapshot: %v", err)
	}
	tr, err = tr.Delete(1)
	if err != nil || len(tr) != 2 {
		t.Fatalf("delete 1: %v %+v", err, tr)
	}
	tr, d, _ := tr.Add(0, "d", time.Now(), 0)
	if d.ID != 3 {
		t.Fatalf("IDs are not reused while higher ones live: got %d", d.ID)
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Add(0, "d", time.Now(), 0); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("duplicate name: %v", err)
	}
}

// TestIDsNeverReused: the counter recorded beside the tree, not the tree,
// gives the next ID, so a deleted highest snapshot's ID, or a flattened
// tree's, does not come back; a record without a counter (0) counts on
// after its highest ID.
func TestIDsNeverReused(t *testing.T) {
	tr := build(t, "a", "b", "c") // a <- b <- c*, counter 3
	next := tr.Next(0)
	tr, err := tr.Revert(1)
	if err != nil {
		t.Fatal(err)
	}
	next = tr.Next(next) // what a delete records: the counter before it
	if tr, err = tr.Delete(2); err != nil {
		t.Fatal(err)
	}
	_, d, err := tr.Add(next, "d", time.Now(), 0)
	if err != nil || d.ID != 3 || d.Parent != 1 {
		t.Fatalf("after deleting the highest (2), the next snapshot is %+v (%v), want ID 3 child of 1", d, err)
	}
	// Flattened: no tree, the counter is all that is left.
	if _, e, _ := Tree(nil).Add(d.ID+1, "e", time.Now(), 0); e.ID != 4 || e.Parent != -1 {
		t.Fatalf("after a flatten the next snapshot is %+v, want ID 4, a root", e)
	}
	// A record written before the counter: it starts after its highest ID,
	// and a counter behind the tree (a hand-made record) cannot make an ID
	// clash.
	old := Tree{{ID: 0, Name: "a", Parent: -1, Date: "2026-12-07T09:00:00Z"}, {ID: 4, Name: "b", Parent: 0, Active: true, Date: "2026-12-07T09:00:00Z"}}
	for _, recorded := range []int64{0, 2} {
		if _, f, _ := old.Add(recorded, "f", time.Now(), 0); f.ID != 5 {
			t.Errorf("counter %d with IDs 0 and 4: the next is %d, want 5", recorded, f.ID)
		}
	}
	if got := old.Next(9); got != 9 {
		t.Errorf("Next(9) of IDs 0 and 4 is %d, want 9", got)
	}
}

func TestTreeOnly(t *testing.T) {
	tr := build(t, "a", "b", "c") // a <- b <- c*
	got := tr.Only(func(n string) bool { return n != "b" })
	if len(got) != 2 || got[1].Name != "c" || got[1].Parent != 0 || !got[1].Active || got.Check() != nil {
		t.Fatalf("c takes a as parent: %+v", got)
	}
	got = tr.Only(func(n string) bool { return n == "a" })
	if len(got) != 1 || got.Active() != -1 {
		t.Fatalf("only a, none active: %+v", got)
	}
}

func TestTreeCheckRefusesBrokenTrees(t *testing.T) {
	at := time.Now().UTC().Format(time.RFC3339)
	s := func(id, parent int64, name string, active bool) schemas.ImageSnapshot {
		return schemas.ImageSnapshot{ID: id, Parent: parent, Name: name, Active: active, Date: at}
	}
	for name, c := range map[string]struct {
		tree Tree
		want string
	}{
		"two active":  {Tree{s(0, -1, "a", true), s(1, 0, "b", true)}, "2 snapshots are active"},
		"dup id":      {Tree{s(0, -1, "a", false), s(0, -1, "b", false)}, "must be unique"},
		"dup name":    {Tree{s(0, -1, "a", false), s(1, -1, "a", false)}, "must be unique"},
		"orphan":      {Tree{s(0, 5, "a", false)}, "parent 5 does not exist"},
		"cycle":       {Tree{s(0, 1, "a", false), s(1, 0, "b", false)}, "cycle"},
		"option name": {Tree{s(0, -1, "-a", false)}, "starting with a letter or digit"},
		"comma name":  {Tree{s(0, -1, "a,b", false)}, "snapshot name"},
		"path name":   {Tree{s(0, -1, "../x", false)}, "snapshot name"},
		"bad date":    {Tree{{ID: 0, Parent: -1, Name: "a", Date: "yesterday"}}, "RFC 3339"},
	} {
		if err := c.tree.Check(); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: got %v, want %q", name, err, c.want)
		}
	}
}
