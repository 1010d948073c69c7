package qemuimg

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// Internal qcow2 snapshots: what the converter does to a persistent image's
// blob (revert, delete, flatten) and what a test checks. Names reach the
// command line as one argument; SnapshotName refuses anything that could
// be read as an option or, inside -l and --image-opts, as another key.

// snapshotName is the schemas' SnapshotName.
var snapshotName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// CheckSnapshotName refuses a name that is not a SnapshotName.
func CheckSnapshotName(name string) error {
	if !snapshotName.MatchString(name) {
		return fmt.Errorf("%w: snapshot name %q: want letters, digits, '.', '_' or '-', starting with a letter or digit", ErrPath, name)
	}
	return nil
}

// Snapshot is one internal snapshot as qemu-img lists it.
type Snapshot struct {
	ID   string
	Name string
	Date time.Time
}

// imageOpts names a local qcow2 file for the subcommands that take no -f
// (snapshot): --image-opts with the format explicit, commas doubled.
func imageOpts(path string) string {
	return "driver=qcow2,file.driver=file,file.filename=" + strings.ReplaceAll(path, ",", ",,")
}

// Snapshots lists the internal snapshots of the qcow2 file at path.
func (r *Runner) Snapshots(ctx context.Context, path string) ([]Snapshot, error) {
	if err := CheckPath(path); err != nil {
		return nil, err
	}
	out, err := r.Run(ctx, r.Light(), "info", "--output=json", "-U", "-f", "qcow2", path)
	if err != nil {
		return nil, err
	}
	var j struct {
		Snapshots []struct {
			ID      string `json:"id"`
			Name    string `json:"name"`
			DateSec int64  `json:"date-sec"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal(out, &j); err != nil {
		return nil, fmt.Errorf("qemu-img info: parse output: %w", err)
	}
	list := make([]Snapshot, len(j.Snapshots))
	for i, s := range j.Snapshots {
		list[i] = Snapshot{ID: s.ID, Name: s.Name, Date: time.Unix(s.DateSec, 0).UTC()}
	}
	return list, nil
}

// SnapshotCreate, SnapshotApply and SnapshotDelete run `qemu-img snapshot
// -c|-a|-d name` on the qcow2 file at path, in place.
func (r *Runner) SnapshotCreate(ctx context.Context, path, name string) error {
	return r.snapshot(ctx, "-c", path, name)
}

// SnapshotApply makes the disk's state that of snapshot name (revert).
func (r *Runner) SnapshotApply(ctx context.Context, path, name string) error {
	return r.snapshot(ctx, "-a", path, name)
}

// SnapshotDelete removes snapshot name.
func (r *Runner) SnapshotDelete(ctx context.Context, path, name string) error {
	return r.snapshot(ctx, "-d", path, name)
}

func (r *Runner) snapshot(ctx context.Context, flag, path, name string) error {
	if err := CheckPath(path); err != nil {
		return err
	}
	if err := CheckSnapshotName(name); err != nil {
		return err
	}
	_, err := r.Run(ctx, r.Heavy(), "snapshot", flag, name, "--image-opts", imageOpts(path))
	return err
}

// Flatten writes to dst a new qcow2 holding the state of snapshot name of
// the qcow2 file at src, without any snapshot.
func (r *Runner) Flatten(ctx context.Context, src, name, dst string) error {
	for _, p := range []string{src, dst} {
		if err := CheckPath(p); err != nil {
			return err
		}
	}
	if err := CheckSnapshotName(name); err != nil {
		return err
	}
	_, err := r.Run(ctx, r.Heavy(), "convert", "-f", "qcow2", "-O", "qcow2", "-l", "snapshot.name="+name, src, dst)
	return err
}
