// Package snapshots keeps the tree of a disk's internal qcow2 snapshots
// (OpenNebula's SNAPSHOTS of a disk): each snapshot has an ID, unique in
// the disk and never reused, a parent (-1 for a root) and at most one is
// active, the one the disk's current state descends from. The launcher (a
// VM's disk) and the catalog (a persistent image) apply the same rules
// through this package.
//
// IDs come from a counter the record keeps beside the tree (OpenNebula's
// NEXT_SNAPSHOT: next_snapshot in schemas.Image, VMDisk and ImageSave):
// a tree cannot hold it, since deleting the highest snapshot, or
// flattening, would forget it. Next reconciles the two, so a record
// written before the counter existed counts on after its highest ID.
package snapshots

import (
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/schemas"
)

// Tree is a disk's snapshots, in the order they were taken.
type Tree []schemas.ImageSnapshot

// Max is the most snapshots a disk may hold (the schemas' maxItems).
const Max = 256

// CheckName refuses a name that is not a SnapshotName: the name reaches
// qemu-img's command line, so qemuimg's check is the one.
func CheckName(name string) error { return qemuimg.CheckSnapshotName(name) }

// Find is the snapshot with ID id.
func (t Tree) Find(id int64) (schemas.ImageSnapshot, bool) {
	i := t.index(id)
	if i < 0 {
		return schemas.ImageSnapshot{}, false
	}
	return t[i], true
}

func (t Tree) index(id int64) int {
	return slices.IndexFunc(t, func(s schemas.ImageSnapshot) bool { return s.ID == id })
}

// ByName is the snapshot named name.
func (t Tree) ByName(name string) (schemas.ImageSnapshot, bool) {
	i := slices.IndexFunc(t, func(s schemas.ImageSnapshot) bool { return s.Name == name })
	if i < 0 {
		return schemas.ImageSnapshot{}, false
	}
	return t[i], true
}

// Active is the ID of the active snapshot, -1 when none is.
func (t Tree) Active() int64 {
	for _, s := range t {
		if s.Active {
			return s.ID
		}
	}
	return -1
}

// Children lists the IDs of the snapshots whose parent is id.
func (t Tree) Children(id int64) []int64 {
	var out []int64
	for _, s := range t {
		if s.Parent == id {
			out = append(out, s.ID)
		}
	}
	return out
}

// Names lists the snapshots' names, in order.
func (t Tree) Names() []string {
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = s.Name
	}
	return out
}

// Next is the ID the next snapshot takes, given the counter recorded
// with the tree: the counter, or one more than the highest ID the tree
// holds if that is more (a record without a counter has 0).
func (t Tree) Next(recorded int64) int64 {
	next := max(recorded, 0)
	for _, s := range t {
		next = max(next, s.ID+1)
	}
	return next
}

// Add is the tree with a new snapshot taken now, child of the active one
// and active itself; its ID is t.Next(next), and the counter to record
// with the new tree is that ID plus one.
func (t Tree) Add(next int64, name string, at time.Time, size int64) (Tree, schemas.ImageSnapshot, error) {
	if err := CheckName(name); err != nil {
		return t, schemas.ImageSnapshot{}, err
	}
	if _, ok := t.ByName(name); ok {
		return t, schemas.ImageSnapshot{}, fmt.Errorf("a snapshot named %q exists already", name)
	}
	if len(t) >= Max {
		return t, schemas.ImageSnapshot{}, fmt.Errorf("the disk has %d snapshots, the most it may hold; delete or flatten some first", len(t))
	}
	s := schemas.ImageSnapshot{ID: t.Next(next), Name: name, Parent: t.Active(), Active: true,
		Date: at.UTC().Format(time.RFC3339), Size: size}
	out := t.activate(-1)
	return append(out, s), s, nil
}

// activate is a copy of the tree with id the active snapshot (-1: none).
func (t Tree) activate(id int64) Tree {
	out := slices.Clone(t)
	for i := range out {
		out[i].Active = out[i].ID == id
	}
	return out
}

// Revert is the tree once the disk took snapshot id's state: id is active.
func (t Tree) Revert(id int64) (Tree, error) {
	if _, ok := t.Find(id); !ok {
		return t, t.missing(id)
	}
	return t.activate(id), nil
}

// CheckDelete says why snapshot id cannot be deleted: OpenNebula deletes
// only a snapshot that is not active and has no children.
func (t Tree) CheckDelete(id int64) error {
	s, ok := t.Find(id)
	switch {
	case !ok:
		return t.missing(id)
	case s.Active:
		return fmt.Errorf("snapshot %d (%s) is active: the disk's current state descends from it, so it cannot be deleted; revert to another snapshot first", id, s.Name)
	}
	if kids := t.Children(id); len(kids) > 0 {
		return fmt.Errorf("snapshot %d (%s) has children (%s): delete them first", id, s.Name, joinIDs(kids))
	}
	return nil
}

// Delete is the tree without snapshot id, which CheckDelete allows.
func (t Tree) Delete(id int64) (Tree, error) {
	if err := t.CheckDelete(id); err != nil {
		return t, err
	}
	i := t.index(id)
	return slices.Delete(slices.Clone(t), i, i+1), nil
}

// Only is the tree without the snapshots whose names present refuses (a
// snapshot the disk no longer holds); their children take their parent.
// If the active one goes, none is active.
func (t Tree) Only(present func(name string) bool) Tree {
	parent := map[int64]int64{}
	for _, s := range t {
		parent[s.ID] = s.Parent
	}
	var out Tree
	for _, s := range t {
		if !present(s.Name) {
			continue
		}
		p := s.Parent
		for p != -1 && !present(t.nameOf(p)) {
			p = parent[p]
		}
		s.Parent = p
		out = append(out, s)
	}
	return out
}

func (t Tree) nameOf(id int64) string {
	s, _ := t.Find(id)
	return s.Name
}

// Check refuses a tree that breaks the rules: IDs and names unique and
// valid, parents present (or -1) and not cyclic, at most one active.
func (t Tree) Check() error {
	if len(t) > Max {
		return fmt.Errorf("%d snapshots: at most %d", len(t), Max)
	}
	ids, names, active := map[int64]bool{}, map[string]bool{}, 0
	for _, s := range t {
		if err := CheckName(s.Name); err != nil {
			return err
		}
		if s.ID < 0 || ids[s.ID] || names[s.Name] {
			return fmt.Errorf("snapshot %d (%s): IDs and names must be unique and IDs not negative", s.ID, s.Name)
		}
		ids[s.ID], names[s.Name] = true, true
		if s.Active {
			active++
		}
		if _, err := time.Parse(time.RFC3339, s.Date); err != nil {
			return fmt.Errorf("snapshot %d (%s): date %q is not RFC 3339", s.ID, s.Name, s.Date)
		}
	}
	if active > 1 {
		return fmt.Errorf("%d snapshots are active: at most one may be", active)
	}
	for _, s := range t {
		if err := t.checkAncestry(s); err != nil {
			return err
		}
	}
	return nil
}

// checkAncestry follows s's parents up to a root.
func (t Tree) checkAncestry(s schemas.ImageSnapshot) error {
	seen := map[int64]bool{s.ID: true}
	for p := s.Parent; p != -1; {
		parent, ok := t.Find(p)
		if !ok {
			return fmt.Errorf("snapshot %d (%s): parent %d does not exist", s.ID, s.Name, p)
		}
		if seen[p] {
			return fmt.Errorf("snapshot %d (%s): its parents form a cycle", s.ID, s.Name)
		}
		seen[p] = true
		p = parent.Parent
	}
	return nil
}

func (t Tree) missing(id int64) error {
	if len(t) == 0 {
		return fmt.Errorf("snapshot %d does not exist: the disk has no snapshots", id)
	}
	return fmt.Errorf("snapshot %d does not exist (snapshots: %s)", id, joinIDs(t.ids()))
}

func (t Tree) ids() []int64 {
	out := make([]int64, len(t))
	for i, s := range t {
		out[i] = s.ID
	}
	return out
}

func joinIDs(ids []int64) string {
	out := ""
	for i, id := range ids {
		if i > 0 {
			out += ", "
		}
		out += strconv.FormatInt(id, 10)
	}
	return out
}
