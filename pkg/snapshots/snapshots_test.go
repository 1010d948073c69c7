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
		if tr, _, err = tr.Add(n, time.Unix(1700000000, 0), 1<<20); err != nil {
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
	tr, c, err := tr.Add("c", time.Now(), 0)
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
	tr, d, _ := tr.Add("d", time.Now(), 0)
	if d.ID != 3 {
		t.Fatalf("IDs are not reused while higher ones live: got %d", d.ID)
	}
	if err := tr.Check(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := tr.Add("d", time.Now(), 0); err == nil || !strings.Contains(err.Error(), "exists already") {
		t.Fatalf("duplicate name: %v", err)
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
