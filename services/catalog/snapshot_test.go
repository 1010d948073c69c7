package catalog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// The catalog's side of image snapshots. The tests play the converter
// (its real qemu-img work is tested in services/converter and, end to end
// with this catalog, in integration/snapshot_test.go).

// snapTree is s0 ─┬─ s1
//
//	└─ s2 (active)
func snapTree() []schemas.ImageSnapshot {
	at := "2026-12-07T09:00:00Z"
	return []schemas.ImageSnapshot{
		{ID: 0, Name: "s0", Parent: -1, Date: at, Size: 1 << 20},
		{ID: 1, Name: "s1", Parent: 0, Date: at, Size: 1 << 20},
		{ID: 2, Name: "s2", Parent: 0, Active: true, Date: at, Size: 1 << 20},
	}
}

// withSnapshots makes a persistent image whose VM took snapshots: VM vm
// uses it and gives it back with a saved qcow2 holding tree.
func (h *harness) withSnapshots(name string, vm int64, typ schemas.ImageType, tree []schemas.ImageSnapshot) schemas.Image {
	h.t.Helper()
	img := h.ready(schemas.ImageCreate{Name: name, SizeMiB: 1, Persistent: true, Type: typ}, []byte("original "+name))
	h.mustUse(img.ID, vm)
	save := h.stage(fmt.Sprintf("vms/%d/disk-0.qcow2", vm), []byte("the disk of VM with snapshots "+name), schemas.DiskFormatQcow2)
	save.Snapshots = tree
	if ev := h.mustRelease(img.ID, vm, save); !ev.Saved {
		h.t.Fatalf("release with snapshots: %+v", ev)
	}
	return h.mustShow(img.ID)
}

// snapshotCommand sends a snapshot command as the CLI does.
func (h *harness) snapshotCommand(verb string, id, snap int64) envelope.Envelope {
	h.t.Helper()
	return h.command(verb, schemas.ImageSnapshotRevert{ID: id, Snapshot: snap})
}

// converterSnapshot waits for the converter.snapshot command about image id
// sent after the command env.
func (h *harness) converterSnapshot(env envelope.Envelope) (*nats.Msg, schemas.ConverterSnapshot) {
	h.t.Helper()
	m := h.rec.Wait(h.t, "converter.snapshot for "+env.ID, func(m *nats.Msg) bool {
		return m.Subject == "slipway.cmd.converter.snapshot.catalog" && m.Header.Get(envelope.HeaderCorrelationID) == env.CorrelationID
	})
	var c schemas.ConverterSnapshot
	mustJSON(h.t, m.Data, &c)
	return m, c
}

// snapshotDone plays the converter: data is the new blob.
func (h *harness) snapshotDone(cmd *nats.Msg, c schemas.ConverterSnapshot, data []byte) schemas.ConverterConverted {
	h.t.Helper()
	return h.convert(cmd, schemas.ConverterImport{ImageID: c.ImageID, Dest: c.Dest}, data, schemas.DiskFormatQcow2)
}

// snapshotAnswer waits for the answer to the command env.
func (h *harness) snapshotAnswer(env envelope.Envelope) schemas.ImageSnapshotChanged {
	h.t.Helper()
	m := h.rec.Wait(h.t, "image-snapshot-changed for "+env.ID, func(m *nats.Msg) bool {
		return strings.Contains(m.Subject, ".image-snapshot-changed.") && m.Header.Get(envelope.HeaderCausationID) == env.ID
	})
	var ev schemas.ImageSnapshotChanged
	mustJSON(h.t, m.Data, &ev)
	return ev
}

// waitTransition waits for image id's state-changed from → to.
func (h *harness) waitTransition(id int64, from, to State) {
	h.t.Helper()
	h.rec.Wait(h.t, fmt.Sprintf("image %d: %s to %s", id, from, to), func(m *nats.Msg) bool {
		var ev schemas.StateChanged
		return m.Subject == "slipway.evt.catalog.state-changed."+idToken(id) && json.Unmarshal(m.Data, &ev) == nil &&
			State(ev.From) == from && State(ev.To) == to
	})
}

func treeString(tree []schemas.ImageSnapshot) string {
	var parts []string
	for _, s := range tree {
		a := ""
		if s.Active {
			a = "*"
		}
		parts = append(parts, fmt.Sprintf("%d:%s<%d%s", s.ID, s.Name, s.Parent, a))
	}
	return strings.Join(parts, " ")
}

// TestSnapshotsComeFromTheRelease: the tree a VM's disk had becomes the
// image's when the VM gives it back; a broken tree is refused and nothing
// is saved.
func TestSnapshotsComeFromTheRelease(t *testing.T) {
	h := newHarness(t)
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	if got := treeString(img.Snapshots); got != "0:s0<-1 1:s1<0 2:s2<0*" {
		t.Fatalf("image snapshots %s", got)
	}
	if !hasSnapshots(img) {
		t.Fatal("hasSnapshots is false for an image with snapshots")
	}
	// A save without a counter (a launcher from before it) counts on after
	// the highest ID; one with a counter gives it to the image; a counter
	// behind the image's own does not take it back.
	if img.NextSnapshot != 3 {
		t.Errorf("next_snapshot after a save without one: %d, want 3", img.NextSnapshot)
	}
	for _, c := range []struct {
		vm, sent, want int64
		tree           []schemas.ImageSnapshot
	}{{21, 7, 7, nil}, {22, 0, 7, snapTree()[:1]}} {
		h.mustUse(img.ID, c.vm)
		save := h.stage(fmt.Sprintf("vms/%d/disk-0.qcow2", c.vm), []byte(fmt.Sprint("the disk of VM ", c.vm)), schemas.DiskFormatQcow2)
		save.Snapshots, save.NextSnapshot = c.tree, c.sent
		if ev := h.mustRelease(img.ID, c.vm, save); !ev.Saved {
			t.Fatalf("release by VM %d: %+v", c.vm, ev)
		}
		if got := h.mustShow(img.ID).NextSnapshot; got != c.want {
			t.Errorf("VM %d saved next_snapshot %d: the image's is %d, want %d", c.vm, c.sent, got, c.want)
		}
	}

	other := h.ready(schemas.ImageCreate{Name: "other", SizeMiB: 1, Persistent: true}, []byte("x"))
	h.mustUse(other.ID, 8)
	bad := snapTree()
	bad[1].Active = true
	save := h.stage("vms/8/disk-0.qcow2", []byte("y"), schemas.DiskFormatQcow2)
	save.Snapshots = bad
	_, err := h.release(other.ID, 8, save)
	if msg := refusalOf(t, err); !strings.Contains(msg, "2 snapshots are active") || !strings.Contains(msg, "VM 8 still holds the image") {
		t.Fatalf("a broken tree: %s", msg)
	}
	raw := h.stage("vms/8/disk-0.raw", []byte("z"), schemas.DiskFormatRaw)
	raw.Snapshots = snapTree()
	_, err = h.release(other.ID, 8, raw)
	if msg := refusalOf(t, err); !strings.Contains(msg, "internal snapshots need qcow2") {
		t.Fatalf("snapshots in a raw disk: %s", msg)
	}
	if got := h.mustShow(other.ID); State(got.State) != StateUsedPers || len(got.Snapshots) != 0 || h.exists(save.Source) {
		t.Fatalf("after the refusals: %+v (staged left: %v)", got, h.exists(save.Source))
	}
}

// TestSnapshotRules: each refusal with its message, before anything is
// locked.
func TestSnapshotRules(t *testing.T) {
	h := newHarness(t)
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	plain := h.ready(schemas.ImageCreate{Name: "plain", SizeMiB: 1, Persistent: true}, []byte("p"))
	refused := func(verb string, id, snap int64, want string) {
		t.Helper()
		_, err := answer[schemas.ImageSnapshotChanged](h, verb, schemas.ImageSnapshotRevert{ID: id, Snapshot: snap}, EvtImageSnapshotChanged)
		if msg := refusalOf(t, err); !strings.Contains(msg, want) {
			t.Errorf("%s %d %d: %q, want %q", verb, id, snap, msg, want)
		}
	}
	revert, del, flatten := schemas.CommandCatalogImageSnapshotRevert, schemas.CommandCatalogImageSnapshotDelete, schemas.CommandCatalogImageSnapshotFlatten
	refused(revert, img.ID, 9, "snapshot 9 does not exist (snapshots: 0, 1, 2)")
	refused(flatten, img.ID, 9, "snapshot 9 does not exist")
	refused(del, img.ID, 2, "snapshot 2 (s2) is active")
	refused(del, img.ID, 0, "snapshot 0 (s0) has children (1, 2): delete them first")
	refused(revert, plain.ID, 0, "has no snapshots")
	cd := schemas.Image{ID: 5, Type: schemas.ImageTypeCDROM, State: schemas.ImageState(StateReady), Snapshots: snapTree(), Source: "s3://b/k"}
	if err := checkSnapshotOp(&cd, schemas.SnapshotOpRevert, 0); err == nil || !strings.Contains(err.Error(), "image 5 is a CDROM image: only OS and DATABLOCK images have snapshots") {
		t.Errorf("a CDROM image: %v", err)
	}
	cd.Type = schemas.ImageTypeOS
	if err := checkSnapshotOp(&cd, schemas.SnapshotOpRevert, 0); err != nil {
		t.Errorf("an OS image: %v", err)
	}
	refused(revert, 99, 0, "image 99 does not exist")
	_, err := answer[schemas.Image](h, schemas.CommandCatalogImageNonpersistent, schemas.ImageRef{ID: img.ID}, schemas.EventCatalogImageUpdated)
	if msg := refusalOf(t, err); !strings.Contains(msg, "has 3 snapshots: flatten first") {
		t.Errorf("non-persistent: %s", msg)
	}
	// In use: the VM's own commands are the way.
	h.mustUse(img.ID, 9)
	refused(revert, img.ID, 0, "is USED_PERS by VM 9: a snapshot operation needs a READY image no VM uses")
	h.mustRelease(img.ID, 9, nil)
	// Nothing was locked on the way.
	h.wantStates(img.ID, "->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->LOCKED_USED_PERS",
		"LOCKED_USED_PERS->READY", "READY->USED_PERS", "USED_PERS->READY")
}

// TestSnapshotOperations runs revert, delete and flatten: each locks the
// image, sends the converter the blob and a dest of its own, records the
// new blob and tree in one write, deletes the old blob and answers.
func TestSnapshotOperations(t *testing.T) {
	h := newHarness(t)
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	steps := []struct {
		verb string
		snap int64
		op   schemas.SnapshotOp
		tree string
	}{
		{schemas.CommandCatalogImageSnapshotRevert, 1, schemas.SnapshotOpRevert, "0:s0<-1 1:s1<0* 2:s2<0"},
		{schemas.CommandCatalogImageSnapshotDelete, 2, schemas.SnapshotOpDelete, "0:s0<-1 1:s1<0*"},
		{schemas.CommandCatalogImageSnapshotFlatten, 0, schemas.SnapshotOpFlatten, ""},
	}
	for i, st := range steps {
		before := h.mustShow(img.ID)
		env := h.snapshotCommand(st.verb, img.ID, st.snap)
		cmd, c := h.converterSnapshot(env)
		name := map[int64]string{0: "s0", 1: "s1", 2: "s2"}[st.snap]
		if c.Source != before.Source || c.Op != st.op || c.Snapshot != name || !inAttempt(c.Dest, img.ID, "disk.qcow2") {
			t.Fatalf("%s: converter command %+v (image source %s)", st.op, c, before.Source)
		}
		if got := h.mustShow(img.ID); State(got.State) != StateLocked {
			t.Fatalf("%s: image is %s while the converter works, want LOCKED", st.op, got.State)
		}
		if i == 0 { // LOCKED refuses a second operation, and a VM
			_, err := answer[schemas.ImageSnapshotChanged](h, schemas.CommandCatalogImageSnapshotRevert, schemas.ImageSnapshotRevert{ID: img.ID, Snapshot: 0}, EvtImageSnapshotChanged)
			if msg := refusalOf(t, err); !strings.Contains(msg, "is LOCKED (an operation is writing its blob): try again once it is READY") {
				t.Errorf("a second operation while LOCKED: %s", msg)
			}
			if _, err := h.use(img.ID, 11); !strings.Contains(refusalOf(t, err), "is LOCKED") {
				t.Errorf("a VM took a LOCKED image: %v", err)
			}
		}
		data := []byte(fmt.Sprintf("blob after step %d", i))
		h.snapshotDone(cmd, c, data)
		ans := h.snapshotAnswer(env)
		after := h.mustShow(img.ID)
		if ans.Op != st.op || ans.SHA256 != sha(data) || State(ans.State) != StateReady || treeString(ans.Snapshots) != st.tree {
			t.Fatalf("%s: answer %+v", st.op, ans)
		}
		if State(after.State) != StateReady || after.Source != c.Dest || after.SHA256 != sha(data) ||
			after.StoredSize != int64(len(data)) || treeString(after.Snapshots) != st.tree {
			t.Fatalf("%s: image after %+v", st.op, after)
		}
		// The counter outlives the snapshots: deleting 2, the highest, or
		// flattening them all does not make 2 the next ID.
		if after.NextSnapshot != 3 {
			t.Errorf("%s: next_snapshot %d, want 3 (IDs 0-2 were given)", st.op, after.NextSnapshot)
		}
		if h.exists(before.Source) || !bytes.Equal(h.read(after.Source), data) {
			t.Fatalf("%s: old blob left %v, or new blob wrong", st.op, h.exists(before.Source))
		}
	}
	// Only READY: a DISABLED image is refused.
	img2 := h.withSnapshots("db2", 12, schemas.ImageTypeDatablock, snapTree())
	if _, err := answer[schemas.StateChanged](h, schemas.CommandCatalogImageDisable, schemas.ImageRef{ID: img2.ID}, schemas.EventCatalogStateChanged); err != nil {
		t.Fatal(err)
	}
	_, err := answer[schemas.ImageSnapshotChanged](h, schemas.CommandCatalogImageSnapshotRevert, schemas.ImageSnapshotRevert{ID: img2.ID, Snapshot: 0}, EvtImageSnapshotChanged)
	if msg := refusalOf(t, err); !strings.Contains(msg, "is DISABLED: a snapshot operation needs a READY image") {
		t.Errorf("a DISABLED image: %s", msg)
	}
	// Flattened: it can be made non-persistent now.
	if _, err := answer[schemas.Image](h, schemas.CommandCatalogImageNonpersistent, schemas.ImageRef{ID: img.ID}, schemas.EventCatalogImageUpdated); err != nil {
		t.Fatalf("non-persistent after flatten: %v", err)
	}
	h.wantStates(img.ID, "->LOCKED", "LOCKED->READY", "READY->USED_PERS", "USED_PERS->LOCKED_USED_PERS", "LOCKED_USED_PERS->READY",
		"READY->LOCKED", "LOCKED->READY", "READY->LOCKED", "LOCKED->READY", "READY->LOCKED", "LOCKED->READY")
}

// TestSnapshotConverterFails: a failure of the converter gives the image
// back READY with its blob and tree as they were, and answers failed.
func TestSnapshotConverterFails(t *testing.T) {
	h := newHarness(t)
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	env := h.snapshotCommand(schemas.CommandCatalogImageSnapshotRevert, img.ID, 0)
	cmd, c := h.converterSnapshot(env)
	h.converterEvent(cmd, "failed", img.ID, schemas.Failure{ImageID: &c.ImageID, Command: cmd.Subject, Code: schemas.CodeInvalidInput,
		Error: `image's blob has no internal snapshot named "s0"`, Phase: "convert"})
	_, f := h.waitFailed(env)
	if !strings.Contains(f.Error, "revert of snapshot 0: the converter failed") {
		t.Fatalf("failed %+v", f)
	}
	after := h.mustShow(img.ID)
	if State(after.State) != StateReady || after.Source != img.Source || after.SHA256 != img.SHA256 || treeString(after.Snapshots) != treeString(img.Snapshots) {
		t.Fatalf("image after a failure %+v", after)
	}
}

// TestSnapshotCatalogKilledMidOperation: the catalog stops while the
// converter works and starts again on the same KV and S3; the converter's
// report, published meanwhile, finishes the operation.
func TestSnapshotCatalogKilledMidOperation(t *testing.T) {
	h := newHarness(t)
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	env := h.snapshotCommand(schemas.CommandCatalogImageSnapshotRevert, img.ID, 1)
	cmd, c := h.converterSnapshot(env)
	h.waitState(img.ID, StateLocked)
	h.stop()
	data := []byte("reverted while the catalog was down")
	h.snapshotDone(cmd, c, data)
	h.start()
	ans := h.snapshotAnswer(env)
	after := h.mustShow(img.ID)
	if State(after.State) != StateReady || after.SHA256 != sha(data) || !bytes.Equal(h.read(after.Source), data) ||
		treeString(after.Snapshots) != "0:s0<-1 1:s1<0* 2:s2<0" || ans.SHA256 != sha(data) {
		t.Fatalf("after the restart: %+v", after)
	}
	if h.exists(img.Source) {
		t.Fatal("the old blob is left behind")
	}
}

// TestSnapshotDeadline: a converter that never reports leaves the image
// READY with its old blob (never written) once the deadline passes; its
// late blob is deleted when it comes.
func TestSnapshotDeadline(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ConvertDeadline = 2 * time.Second })
	img := h.withSnapshots("db", 7, schemas.ImageTypeDatablock, snapTree())
	env := h.snapshotCommand(schemas.CommandCatalogImageSnapshotFlatten, img.ID, 2)
	cmd, c := h.converterSnapshot(env)
	_, f := h.waitFailed(env)
	if f.Code != schemas.CodeDeadlineExceeded || !strings.Contains(f.Error, "keeps its blob and snapshots as they were") {
		t.Fatalf("failed %+v", f)
	}
	after := h.mustShow(img.ID)
	if State(after.State) != StateReady || after.Source != img.Source || len(after.Snapshots) != 3 || !h.exists(img.Source) {
		t.Fatalf("after the deadline: %+v", after)
	}
	h.snapshotDone(cmd, c, []byte("too late"))
	deadline := time.Now().Add(10 * time.Second)
	for h.exists(c.Dest) {
		if time.Now().After(deadline) {
			t.Fatal("the late blob was not deleted")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := h.mustShow(img.ID); got.Source != img.Source || got.SHA256 != img.SHA256 {
		t.Fatalf("the late report changed the image: %+v", got)
	}
}

// TestReconcilerFinishesStuckStates: an image left in DELETE is deleted,
// LOCKED_USED_PERS goes back to USED_PERS with the record describing the
// blob, LOCKED_USED back to USED, each once unchanged for StuckAfter.
func TestReconcilerFinishesStuckStates(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.StuckAfter = 500 * time.Millisecond })
	del := h.ready(schemas.ImageCreate{Name: "del", SizeMiB: 1}, []byte("to delete"))
	pers := h.ready(schemas.ImageCreate{Name: "pers", SizeMiB: 1, Persistent: true}, []byte("persistent"))
	shared := h.ready(schemas.ImageCreate{Name: "shared", SizeMiB: 1}, []byte("shared"))
	h.mustUse(pers.ID, 7)
	h.mustUse(shared.ID, 8)
	h.mustUse(shared.ID, 9)
	// What a crash leaves: the state written, the rest not done; for the
	// save, the copy over the blob had landed.
	force := func(id int64, to State) {
		t.Helper()
		if _, _, err := h.svc.images.Update(h.ctx, id, func(img *schemas.Image) error { return transition(img, to) }); err != nil {
			t.Fatal(err)
		}
	}
	force(del.ID, StateDelete)
	force(pers.ID, StateLockedUsedPers)
	force(shared.ID, StateLockedUsed)
	saved := []byte("the VM's saved disk, copied before the crash")
	h.put(pers.Source, saved)

	h.rec.Wait(t, "image-deleted", func(m *nats.Msg) bool { return m.Subject == "slipway.evt.catalog.image-deleted."+idToken(del.ID) })
	h.waitTransition(pers.ID, StateLockedUsedPers, StateUsedPers)
	h.waitTransition(shared.ID, StateLockedUsed, StateUsed)
	if _, err := h.show(del.ID); err == nil || h.exists(del.Source) {
		t.Fatalf("the deleted image is still there (blob %v)", h.exists(del.Source))
	}
	if got := h.mustShow(pers.ID); got.SHA256 != sha(saved) || got.StoredSize != int64(len(saved)) || len(got.VMs) != 1 {
		t.Fatalf("persistent image after the roll-back %+v", got)
	}
	if got := h.mustShow(shared.ID); got.RVMs != 2 || got.SHA256 != shared.SHA256 {
		t.Fatalf("shared image after the roll-back %+v", got)
	}
	// The name is free again.
	h.ready(schemas.ImageCreate{Name: "del", SizeMiB: 1}, []byte("again"))
	// The VMs can still let go.
	h.mustRelease(pers.ID, 7, nil)
	h.mustRelease(shared.ID, 8, nil)
}
