package qemuimg

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestSnapshots takes, lists, applies, flattens and deletes internal
// snapshots of a real qcow2 with qemu-img, and refuses names that qemu-img
// could read as something else.
func TestSnapshots(t *testing.T) {
	r := &Runner{}
	ctx := context.Background()
	dir := t.TempDir()
	disk := filepath.Join(dir, "d.qcow2")
	if err := r.Create(ctx, disk, "qcow2", 1<<20); err != nil {
		t.Skipf("qemu-img cannot create a qcow2 here: %v", err)
	}
	for _, n := range []string{"one", "two"} {
		if err := r.SnapshotCreate(ctx, disk, n); err != nil {
			t.Fatal(err)
		}
	}
	list, err := r.Snapshots(ctx, disk)
	if err != nil || len(list) != 2 || list[0].Name != "one" || list[1].Name != "two" || list[0].Date.IsZero() {
		t.Fatalf("snapshots: %v %+v", err, list)
	}
	if err := r.SnapshotApply(ctx, disk, "one"); err != nil {
		t.Fatal(err)
	}
	if err := r.SnapshotApply(ctx, disk, "nope"); err == nil {
		t.Fatal("applying a snapshot that does not exist succeeded")
	}
	flat := filepath.Join(dir, "flat.qcow2")
	if err := r.Flatten(ctx, disk, "two", flat); err != nil {
		t.Fatal(err)
	}
	if l, err := r.Snapshots(ctx, flat); err != nil || len(l) != 0 {
		t.Fatalf("a flattened disk has no snapshots: %v %+v", err, l)
	}
	if err := r.SnapshotDelete(ctx, disk, "one"); err != nil {
		t.Fatal(err)
	}
	if l, _ := r.Snapshots(ctx, disk); len(l) != 1 || l[0].Name != "two" {
		t.Fatalf("after delete: %+v", l)
	}
	for _, bad := range []string{"-l", "a,b", "x=y", "../two", "", "a b"} {
		if err := r.SnapshotApply(ctx, disk, bad); !errors.Is(err, ErrPath) {
			t.Errorf("name %q: got %v, want a refusal", bad, err)
		}
	}
	if _, err := os.Stat(flat); err != nil {
		t.Fatal(err)
	}
}
