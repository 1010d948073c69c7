package converter

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// snapDisk makes a qcow2 whose first 64 KiB hold 'a' in snapshot "sa",
// 'b' in snapshot "sb", and 'c' in its current state.
func snapDisk(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "snap.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", p, "4M")
	testenv.PatternSnapshots(t, p)
	return p
}

// sagaCommand sends a snapshot command in saga sagaID.
func (h *harness) sagaCommand(cmd schemas.ConverterSnapshot, sagaID string) {
	h.t.Helper()
	testenv.Command(h.t, h.ctx, h.cli, Name, "snapshot", cmd, bus.WithCorrelation(sagaID))
}

func snapshotNames(t *testing.T, path string) []string {
	t.Helper()
	info := qemuInfo(t, path)
	var out []string
	list, _ := info["snapshots"].([]any)
	for _, s := range list {
		out = append(out, s.(map[string]any)["name"].(string))
	}
	return out
}

// TestSnapshotCommand runs revert, delete and flatten on a real qcow2 blob
// with real qemu-img: the source stays as it was, dest holds the result.
func TestSnapshotCommand(t *testing.T) {
	h := newHarness(t, Config{})
	src := testenv.Upload(t, h.ctx, h.store, snapDisk(t), testenv.Images, "images/20/disk.qcow2").URL()
	cases := []struct {
		op    schemas.SnapshotOp
		snap  string
		state string
		snaps string
	}{
		{schemas.SnapshotOpRevert, "sa", "a", "sa,sb"},
		{schemas.SnapshotOpDelete, "sa", "c", "sb"},
		{schemas.SnapshotOpFlatten, "sb", "b", ""},
	}
	for _, c := range cases {
		sagaID := uuid.NewString()
		dest := blob.URL(testenv.Images, blob.AttemptPrefix(20, sagaID)+"disk.qcow2")
		h.sagaCommand(schemas.ConverterSnapshot{ImageID: 20, Source: src, Dest: dest, Op: c.op, Snapshot: c.snap}, sagaID)
		var ev schemas.ConverterConverted
		h.event("converted", "20", &ev)
		out := assertStored(t, h, ev)
		if got := testenv.PatternState(t, out); got != c.state {
			t.Errorf("%s %s: the disk holds %q, want %q", c.op, c.snap, got, c.state)
		}
		if got := strings.Join(snapshotNames(t, out), ","); got != c.snaps {
			t.Errorf("%s %s: snapshots %q, want %q", c.op, c.snap, got, c.snaps)
		}
		if ev.Format != "qcow2" || ev.VirtualSize != 4<<20 {
			t.Errorf("%s: converted %+v", c.op, ev)
		}
	}
	// The source was never written.
	orig := h.download(src)
	if got := testenv.PatternState(t, orig); got != "c" || strings.Join(snapshotNames(t, orig), ",") != "sa,sb" {
		t.Errorf("the source changed: %s, %v", got, snapshotNames(t, orig))
	}
}

// TestSnapshotCommandRefusals: a snapshot the blob lacks, a name qemu-img
// could misread, a source of another image, a dest not derived from the
// saga: each ends failed with the reason, nothing written.
func TestSnapshotCommandRefusals(t *testing.T) {
	h := newHarness(t, Config{})
	src := testenv.Upload(t, h.ctx, h.store, snapDisk(t), testenv.Images, "images/21/disk.qcow2").URL()
	dest := testenv.Dest(21, "disk.qcow2")
	for _, c := range []struct {
		cmd  schemas.ConverterSnapshot
		want string
	}{
		{schemas.ConverterSnapshot{ImageID: 21, Source: src, Dest: dest, Op: "revert", Snapshot: "nope"}, `no internal snapshot named "nope"`},
		{schemas.ConverterSnapshot{ImageID: 22, Source: src, Dest: testenv.Dest(22, "disk.qcow2"), Op: "revert", Snapshot: "sa"}, "is not a blob of image 22"},
		{schemas.ConverterSnapshot{ImageID: 21, Source: src, Dest: "s3://" + testenv.Images + "/images/21/disk.qcow2", Op: "revert", Snapshot: "sa"}, "the key is derived from the image and the saga"},
		{schemas.ConverterSnapshot{ImageID: 21, Source: "s3://" + testenv.Uploads + "/x/disk.qcow2", Dest: dest, Op: "revert", Snapshot: "sa"}, "not an image's blob"},
	} {
		h.command("snapshot", c.cmd)
		var f schemas.Failure
		h.event("failed", idToken(c.cmd.ImageID), &f)
		if f.Retryable || !strings.Contains(f.Error, c.want) {
			t.Errorf("%+v: failed %+v, want %q", c.cmd, f, c.want)
		}
	}
	// A name that is not a SnapshotName never reaches the service.
	h.command("snapshot", map[string]any{"image_id": 21, "source": src, "dest": dest, "op": "revert", "snapshot": "-l"})
	var f schemas.Failure
	h.event("failed", "21", &f)
	if f.Retryable || !strings.Contains(f.Error, "snapshot") {
		t.Errorf("a name starting with '-': failed %+v", f)
	}
}
