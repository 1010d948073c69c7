package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
)

// Snapshot operations on a persistent image (saga snapshot). An image's
// snapshots are internal qcow2 snapshots inside its one blob (the blob a
// VM's disk-snapshot wrote them into); the record keeps them as a tree
// (schemas.ImageSnapshot). The catalog never downloads the blob: the
// converter does the work on a copy and writes a new blob.
//
//	image-snapshot-revert / -delete / -flatten {id, snapshot} ──► image
//	     READY, OS or DATABLOCK, the snapshot exists (delete: not active,
//	     no children), else refused ──► LOCKED (compare-and-set: a VM's
//	     image-use is refused from now on) ──► converter.snapshot
//	     {source: the blob, dest: images/<id>/<saga>/disk.qcow2}
//	converter.converted ──► the record names dest, its size and SHA-256 and
//	     the new tree, READY, in one write ──► the old blob is deleted ──►
//	     image-snapshot-changed answers
//	converter.failed ──► READY, the record and blob unchanged ──► failed
//	     answers
//	deadline ──► READY with the old blob (it was never written) ──► failed;
//	     a late converted deletes its dest.
//
// Every step can run again after a crash: the old blob stays until the
// record names the new one, so the image is READY with a blob that matches
// its record whichever side of the write the crash falls.
const (
	KindSnapshot  = "snapshot"
	PhaseSnapshot = saga.Phase("snapshot")
	// EvtImageSnapshotChanged answers a snapshot command.
	EvtImageSnapshotChanged = schemas.EventCatalogImageSnapshotChanged
)

// snapData is the state of a snapshot saga.
type snapData struct {
	ImageID   int64  `json:"image_id"`
	CommandID string `json:"command_id"`
	// Command is the subject of the catalog command.
	Command  string             `json:"command"`
	Op       schemas.SnapshotOp `json:"op"`
	Snapshot int64              `json:"snapshot"`
	// Name is the snapshot's name in the blob.
	Name string `json:"name"`
	// Source is the image's blob when locked; Dest the new one.
	Source string `json:"source"`
	Dest   string `json:"dest"`
}

func (s *Service) snapshotFlow() *flow {
	return &flow{
		kind: KindSnapshot, what: "the snapshot operation", fail: s.snapshotExpired,
		phases: []phase{{
			name:     PhaseSnapshot,
			commands: []string{"converter.snapshot"},
			on:       map[string]eventHandler{evtConverted: s.snapshotConverted, evtConvertFailed: s.snapshotFailed},
			deadline: s.cfg.ConvertDeadline,
			resume:   s.resumeSnapshot,
		}},
	}
}

// snapshotOps maps the commands to their operation.
var snapshotOps = map[string]schemas.SnapshotOp{
	schemas.CommandCatalogImageSnapshotRevert:  schemas.SnapshotOpRevert,
	schemas.CommandCatalogImageSnapshotDelete:  schemas.SnapshotOpDelete,
	schemas.CommandCatalogImageSnapshotFlatten: schemas.SnapshotOpFlatten,
}

// applySnapshotOp is the tree after op on snapshot id, or why op cannot
// be done.
func applySnapshotOp(tree snapshots.Tree, op schemas.SnapshotOp, id int64) (snapshots.Tree, error) {
	switch op {
	case schemas.SnapshotOpRevert:
		return tree.Revert(id)
	case schemas.SnapshotOpDelete:
		return tree.Delete(id)
	}
	if _, ok := tree.Find(id); !ok {
		_, err := tree.Revert(id) // the same words for a missing snapshot
		return tree, err
	}
	return nil, nil
}

// checkSnapshotOp refuses an operation the image or its tree does not
// allow, in words a person can act on.
func checkSnapshotOp(img *schemas.Image, op schemas.SnapshotOp, id int64) error {
	if err := Allow(OpSnapshot, img); err != nil {
		return &refusal{lockedCode(img, err)}
	}
	if _, err := applySnapshotOp(img.Snapshots, op, id); err != nil {
		return refuse("image %d: %v", img.ID, err)
	}
	return nil
}

// changeSnapshot handles image-snapshot-revert, -delete and -flatten: it
// locks the image and asks the converter. Like changeSlots, each step
// tolerates having been done already.
func (s *Service) changeSnapshot(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	var req schemas.ImageSnapshotRevert // the three commands have the same fields
	if err := decode(m, &req); err != nil {
		return processed{ImageID: -1}, err
	}
	d := snapData{ImageID: req.ID, CommandID: m.Envelope.ID, Command: m.Subject, Op: snapshotOps[m.Name], Snapshot: req.Snapshot}
	res := processed{ImageID: d.ImageID}
	img, err := s.images.existing(ctx, d.ImageID)
	if err != nil {
		return res, err
	}
	if prior == nil {
		if err := checkSnapshotOp(img, d.Op, d.Snapshot); err != nil {
			return res, err
		}
	}
	if res.SagaID, err = s.claimSaga(ctx, m, prior, d.ImageID); err != nil {
		return res, err
	}
	if err := s.describeSnapshotOp(img, &d, res.SagaID); err != nil {
		return res, err
	}
	// A redelivery finds the saga stored with the blob it locked.
	sg, err := startData(ctx, s, res.SagaID, KindSnapshot, d.ImageID, &d)
	if err != nil {
		return res, err
	}
	return res, s.lockThenSend(ctx, sg,
		func() error { return s.lockForSnapshot(ctx, m, sg.ID, d) },
		func() error { return s.sendSnapshot(ctx, m.Envelope, sg.ID, d) })
}

// describeSnapshotOp fills in the blob the operation reads and the one it
// writes, derived from the image and the saga.
func (s *Service) describeSnapshotOp(img *schemas.Image, d *snapData, sagaID string) error {
	ds, ok := s.stores[img.Datastore]
	if !ok {
		return fmt.Errorf("image %d: datastore %q is not configured", img.ID, img.Datastore)
	}
	if sn, ok := snapshots.Tree(img.Snapshots).Find(d.Snapshot); ok {
		d.Name = sn.Name
	}
	d.Source = img.Source
	d.Dest = blob.URL(ds.Bucket, blob.AttemptPrefix(img.ID, sagaID)+"disk.qcow2")
	return nil
}

func (s *Service) sendSnapshot(ctx context.Context, cause envelope.Envelope, sagaID string, d snapData) error {
	return s.send(ctx, cause, sagaID, PhaseSnapshot, d.ImageID, schemas.ServiceConverter, schemas.CommandConverterSnapshot,
		schemas.ConverterSnapshot{ImageID: d.ImageID, Source: d.Source, Dest: d.Dest, Op: d.Op, Snapshot: d.Name})
}

// lockForSnapshot moves the image from READY to LOCKED for saga sagaID, in
// one compare-and-set: a VM that took it meanwhile makes it a refusal.
func (s *Service) lockForSnapshot(ctx context.Context, m *bus.Msg, sagaID string, d snapData) error {
	return s.lockFor(ctx, m, sagaID, d.ImageID, StateReady, "snapshot", func(img *schemas.Image) error {
		if err := checkSnapshotOp(img, d.Op, d.Snapshot); err != nil {
			return err
		}
		if img.Source != d.Source {
			return refuse("image %d changed while its snapshot operation started (its blob is now %s): try again", img.ID, img.Source)
		}
		return nil
	})
}

// ourStep reports whether m answers the saga's converter command.
func ourStep(m *bus.Msg, sg *saga.Saga) bool {
	return m.Envelope.CausationID == envelope.StepID(sg.ID, string(PhaseSnapshot))
}

// snapshotConverted records the converter's new blob and gives the image
// back, then answers the command.
func (s *Service) snapshotConverted(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.ConverterConverted, snapData](m, sg)
	if err != nil || !ourStep(m, sg) {
		return err
	}
	switch {
	case sg.Status == saga.StatusSucceeded:
		return nil // a duplicate
	case ev.Dest != d.Dest:
		_ = s.deleteAttempt(ctx, ev, sg.ID)
		return s.endSnapshot(ctx, sg, d, &m.Envelope, schemas.CodeInternal,
			fmt.Sprintf("the converter stored the new blob at %s instead of %s", ev.Dest, d.Dest))
	}
	img, err := s.commitSnapshot(ctx, m, sg.ID, d, ev)
	if err != nil {
		return err
	}
	if img.Source != d.Dest {
		// The saga failed (a deadline) and gave the image back first:
		// this blob came too late and belongs to nobody.
		s.log.Info("deleting a snapshot blob that arrived after its saga ended", "image", d.ImageID, "dest", ev.Dest)
		return s.deleteAttempt(ctx, ev, sg.ID)
	}
	if d.Source != "" && d.Source != d.Dest {
		if err := s.deleteURL(ctx, d.Source); err != nil {
			return err
		}
	}
	// A converter killed while it uploaded left a multipart upload under
	// the attempt's keys; the one that finished owns them now.
	if bucket, _, err := blob.ParseURL(d.Dest); err == nil {
		if err := s.blobs.AbortIncomplete(ctx, bucket, blob.AttemptPrefix(d.ImageID, sg.ID)); err != nil {
			return err
		}
	}
	if sg.Status != saga.StatusRunning {
		return nil
	}
	answer := schemas.ImageSnapshotChanged{ID: d.ImageID, Op: d.Op, Snapshot: d.Snapshot, Snapshots: img.Snapshots,
		Size: img.StoredSize, SHA256: img.SHA256, State: img.State}
	if _, err := s.bus.Event(ctx, EvtImageSnapshotChanged, idToken(d.ImageID), answer, answersCommand(sg.ID, d.CommandID, EvtImageSnapshotChanged)...); err != nil {
		return err
	}
	_, err = s.sagas.Succeed(ctx, sg.ID, string(d.Op)+" done")
	return err
}

// commitSnapshot makes the record name the new blob and tree and gives
// the image back READY, in one write; it returns the record as it is.
func (s *Service) commitSnapshot(ctx context.Context, m *bus.Msg, sagaID string, d snapData, ev schemas.ConverterConverted) (*schemas.Image, error) {
	img, changed, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		if img.SagaID != sagaID || State(img.State) != StateLocked {
			return errNoChange // committed already (a duplicate), or given back
		}
		tree, err := applySnapshotOp(img.Snapshots, d.Op, d.Snapshot)
		if err != nil {
			return err
		}
		// The counter goes on from the tree before: a deleted (or
		// flattened) snapshot's ID is not given again.
		img.NextSnapshot = snapshots.Tree(img.Snapshots).Next(img.NextSnapshot)
		img.Snapshots = tree
		img.Source, img.SHA256, img.StoredSize, img.Size, img.Format = ev.Dest, ev.SHA256, ev.Size, ev.VirtualSize, ev.Format
		return transition(img, StateReady)
	})
	if err != nil || !changed {
		return img, err
	}
	if err := s.emitState(ctx, d.ImageID, StateLocked, StateReady, "", causedBy(m.Envelope, "snapshot-done/"+schemas.EventCatalogStateChanged)); err != nil {
		return nil, err
	}
	return img, s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, "snapshot-done/"+schemas.EventCatalogImageUpdated))
}

// snapshotFailed gives the image back, its record and blob unchanged, when
// the converter refuses or fails the saga's command.
func (s *Service) snapshotFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.Failure, snapData](m, sg)
	if err != nil || !ourStep(m, sg) || sg.Status == saga.StatusSucceeded {
		return err
	}
	return s.endSnapshot(ctx, sg, d, &m.Envelope, ev.Code, fmt.Sprintf("%s of snapshot %d: the converter failed: %s", d.Op, d.Snapshot, ev.Error))
}

// snapshotExpired is the flow's fail: the old blob was never written, so
// the image goes back READY with it; a late report deletes its dest.
func (s *Service) snapshotExpired(ctx context.Context, sg *saga.Saga, code, reason string, cause *envelope.Envelope) error {
	var d snapData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	return s.endSnapshot(ctx, sg, d, cause, code, reason+"; the image keeps its blob and snapshots as they were")
}

// endSnapshot gives the image back READY with its old blob, answers the
// command with failed and fails the saga.
func (s *Service) endSnapshot(ctx context.Context, sg *saga.Saga, d snapData, cause *envelope.Envelope, code, reason string) error {
	img, changed, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		if img.SagaID != sg.ID || State(img.State) != StateLocked {
			return errNoChange
		}
		return transition(img, StateReady)
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if changed {
		if err := s.emitState(ctx, d.ImageID, StateLocked, StateReady, reason, stepOpts(sg.ID, cause, "snapshot-failed/"+schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
	}
	if img != nil && img.Source != d.Dest {
		if err := s.deleteURL(ctx, d.Dest); err != nil {
			return err
		}
	}
	if sg.Status != saga.StatusRunning {
		return nil
	}
	id := d.ImageID
	if err := s.emitFailed(ctx, idToken(id), &id, d.Command, code, reason, answersCommand(sg.ID, d.CommandID, "snapshot-failed/"+schemas.EventCatalogFailed)); err != nil {
		return err
	}
	return s.settle(ctx, sg, reason)
}

// resumeSnapshot picks up a saga after a restart: the converter is asked
// again (the same step ID: a copy within JetStream's window is dropped, a
// later one rewrites the same dest), unless the record names the new blob
// already, in which case the answer is what is left to do.
func (s *Service) resumeSnapshot(ctx context.Context, sg *saga.Saga) error {
	var d snapData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	img, _, err := s.images.Get(ctx, d.ImageID)
	if errors.Is(err, ErrNotFound) {
		return s.settle(ctx, sg, fmt.Sprintf("image %d was deleted", d.ImageID))
	}
	if err != nil || img.SagaID != sg.ID || State(img.State) != StateLocked {
		return err // not locked yet (the command's redelivery does it), or given back
	}
	return s.sendSnapshot(ctx, envelope.Envelope{ID: d.CommandID, CorrelationID: sg.ID}, sg.ID, d)
}

// answersCommand are the options of the event that answers a saga's
// command: caused by it, so the sender's bus.Call sees it.
func answersCommand(sagaID, commandID, what string) []bus.PubOption {
	return []bus.PubOption{bus.CausedBy(envelope.Envelope{ID: commandID, CorrelationID: sagaID}),
		bus.WithID(envelope.StepID(sagaID, what))}
}
