package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// maxAttributes is the schema's bound on an image's attributes.
const maxAttributes = 256

// handleCommand validates a command, skips one already processed, and
// runs it. A command that is malformed or refused is terminated with a
// failed event; an infrastructure error is retried.
func (s *Service) handleCommand(ctx context.Context, m *bus.Msg) error {
	// The catalog consumes every command of its contract (schemas/cmd).
	if !schemas.Known(schemas.KindCommand, ServiceName, m.Name) {
		return s.reject(ctx, m, nil, fmt.Errorf("the catalog has no command %q (commands: %s)", m.Name, strings.Join(bus.Commands(ServiceName), ", ")))
	}
	if err := schemas.Validate(schemas.KindCommand, ServiceName, m.Name, m.Data); err != nil {
		return s.reject(ctx, m, nil, err)
	}
	ctx, err := s.authorize(ctx, m)
	if err != nil {
		if isRefusal(err) {
			return s.reject(ctx, m, peekID(m), err)
		}
		return err
	}
	prior, _, err := s.dedupGet(ctx, m.Envelope.ID)
	if err != nil {
		return err
	}
	if prior != nil && prior.Done {
		s.log.Info("command already processed; ignoring the redelivery",
			"subject", m.Subject, "ce_id", m.Envelope.ID, "image", prior.ImageID)
		return nil
	}
	res, err := s.dispatch(ctx, m, prior)
	if err != nil {
		if isRefusal(err) {
			var id *int64
			if res.ImageID >= 0 {
				id = &res.ImageID
			}
			return s.reject(ctx, m, id, err)
		}
		return err
	}
	return s.dedupDone(ctx, m.Envelope.ID, res)
}

// dispatch runs one valid command. The result's ImageID is -1 when no
// image is concerned.
func (s *Service) dispatch(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	if ok, err := s.accountCommand(ctx, m); ok {
		return processed{ImageID: -1}, err
	}
	if res, ok, err := s.permissionCommand(ctx, m); ok {
		return res, err
	}
	if ok, err := s.datastoreCommand(ctx, m); ok {
		return processed{ImageID: -1}, err
	}
	switch m.Name {
	case schemas.CommandCatalogImageCreate:
		return s.createOrDrop(ctx, m, prior)
	case schemas.CommandCatalogImageEncrypt:
		return s.encrypt(ctx, m, prior)
	case schemas.CommandCatalogImageClone:
		return s.clone(ctx, m, prior)
	case schemas.CommandCatalogImageSlotAdd, schemas.CommandCatalogImageSlotRemove, schemas.CommandCatalogImageSlotRotate:
		return s.changeSlots(ctx, m, prior)
	case schemas.CommandCatalogImageSnapshotRevert, schemas.CommandCatalogImageSnapshotDelete, schemas.CommandCatalogImageSnapshotFlatten:
		return s.changeSnapshot(ctx, m, prior)
	}
	switch m.Name {
	case schemas.CommandCatalogImageRename:
		var req schemas.ImageRename
		return decodeAndRun(m, &req, &req.ID, func() error { return s.rename(ctx, m, req) })
	case schemas.CommandCatalogImageUpdate:
		var req schemas.ImageUpdate
		return decodeAndRun(m, &req, &req.ID, func() error { return s.updateAttributes(ctx, m, req) })
	case schemas.CommandCatalogImageUse:
		var req schemas.ImageUse
		return decodeAndRun(m, &req, &req.ID, func() error { return s.use(ctx, m, req) })
	case schemas.CommandCatalogImageRelease:
		var req schemas.ImageRelease
		return decodeAndRun(m, &req, &req.ID, func() error { return s.release(ctx, m, req) })
	case schemas.CommandCatalogImageLock:
		var req schemas.ImageLockRequest
		return decodeAndRun(m, &req, &req.ID, func() error { return s.lockImage(ctx, m, req) })
	case schemas.CommandCatalogImageCopyLock:
		var req schemas.ImageCopyLock
		return decodeAndRun(m, &req, &req.ID, func() error { return s.copyLock(ctx, m, req) })
	}
	var req schemas.ImageRef
	return decodeAndRun(m, &req, &req.ID, func() error { return s.simple(ctx, m, req.ID) })
}

// decodeAndRun decodes m's payload into req and runs the command on it;
// id points at req's image ID, which the result names.
func decodeAndRun(m *bus.Msg, req any, id *int64, run func() error) (processed, error) {
	if err := decode(m, req); err != nil {
		return processed{}, err
	}
	return processed{ImageID: *id}, run()
}

// simple runs the commands that name an image and nothing else.
func (s *Service) simple(ctx context.Context, m *bus.Msg, id int64) error {
	switch m.Name {
	case schemas.CommandCatalogImageEnable:
		return s.setState(ctx, m, id, OpEnable, StateDisabled, StateReady)
	case schemas.CommandCatalogImageDisable:
		return s.setState(ctx, m, id, OpDisable, StateReady, StateDisabled)
	case schemas.CommandCatalogImagePersistent:
		return s.setPersistent(ctx, m, id, true)
	case schemas.CommandCatalogImageNonpersistent:
		return s.setPersistent(ctx, m, id, false)
	case schemas.CommandCatalogImageDelete:
		return s.delete(ctx, m, id)
	case schemas.CommandCatalogImageUnlock:
		return s.unlockImage(ctx, m, id)
	}
	return refuse("the catalog has no command %q", m.Name)
}

// reject publishes the failed event of a command and terminates it.
func (s *Service) reject(ctx context.Context, m *bus.Msg, id *int64, cause error) error {
	subjectID := "cmd-" + strconv.FormatUint(m.StreamSeq, 10)
	if id != nil {
		subjectID = idToken(*id)
	}
	s.log.Warn("command refused", "subject", m.Subject, "ce_id", m.Envelope.ID, "err", cause)
	if err := s.emitFailed(ctx, subjectID, id, m.Subject, bus.CodeOr(cause, schemas.CodeConflict), cause.Error(), causedBy(m.Envelope, schemas.EventCatalogFailed)); err != nil {
		return fmt.Errorf("publish failed event for %s: %w (refusal: %v)", m.Subject, err, cause)
	}
	if s.dedup != nil && m.Envelope.ID != "" {
		p := processed{ImageID: -1, Error: cause.Error()}
		if id != nil {
			p.ImageID = *id
		}
		if err := s.dedupDone(ctx, m.Envelope.ID, p); err != nil {
			s.log.Warn("recording a refused command", "err", err)
		}
	}
	return bus.Terminal(cause)
}

// modify applies change to image id under compare-and-set, after checking
// that op is allowed in the image's current state. It returns the record
// before and after, and whether anything was written.
func (s *Service) modify(ctx context.Context, id int64, op Op, change func(*schemas.Image) error) (before, after *schemas.Image, changed bool, err error) {
	after, changed, err = s.images.Update(ctx, id, func(img *schemas.Image) error {
		before = cloneImage(img)
		if err := Allow(op, img); err != nil {
			return &refusal{lockedCode(img, err)}
		}
		return change(img)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, nil, false, &refusal{bus.WithCode(schemas.CodeNotFound, fmt.Errorf("image %d does not exist", id))}
	}
	return before, after, changed, err
}

// setState is enable and disable: from → to, a no-op when already there.
func (s *Service) setState(ctx context.Context, m *bus.Msg, id int64, op Op, from, to State) error {
	_, _, changed, err := s.modify(ctx, id, op, func(img *schemas.Image) error {
		return transition(img, to)
	})
	if err != nil {
		return err
	}
	// A redelivery finds the change made; publish again in case the first
	// delivery died before it could (same event ID: JetStream drops a copy).
	if changed || m.Delivered > 1 {
		return s.emitState(ctx, id, from, to, "", causedBy(m.Envelope, schemas.EventCatalogStateChanged))
	}
	return nil
}

func (s *Service) setPersistent(ctx context.Context, m *bus.Msg, id int64, persistent bool) error {
	op := OpNonPersistent
	if persistent {
		op = OpPersistent
	}
	_, img, changed, err := s.modify(ctx, id, op, func(img *schemas.Image) error {
		if img.Persistent == persistent {
			return errNoChange
		}
		img.Persistent = persistent
		return nil
	})
	if err != nil {
		return err
	}
	return s.updated(ctx, m, img, changed)
}

// updated says image-updated after a change, and again on a redelivery:
// the first delivery may have died before it could (same event ID:
// JetStream drops a copy).
func (s *Service) updated(ctx context.Context, m *bus.Msg, img *schemas.Image, changed bool) error {
	if changed || m.Delivered > 1 {
		return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, schemas.EventCatalogImageUpdated))
	}
	return nil
}

func (s *Service) rename(ctx context.Context, m *bus.Msg, req schemas.ImageRename) error {
	cur, err := s.images.existing(ctx, req.ID)
	if err != nil {
		return err
	}
	if err := Allow(OpRename, cur); err != nil {
		return &refusal{err}
	}
	if cur.Name != req.Name {
		if err := s.images.claimName(ctx, cur.User, req.Name, req.ID); err != nil {
			return err
		}
	}
	var old string
	_, img, changed, err := s.modify(ctx, req.ID, OpRename, func(img *schemas.Image) error {
		if img.Name == req.Name {
			return errNoChange
		}
		old = img.Name
		img.Name = req.Name
		return nil
	})
	if err != nil {
		if cur.Name != req.Name {
			_ = s.images.releaseName(ctx, cur.User, req.Name, req.ID)
		}
		return err
	}
	if changed {
		if err := s.images.releaseName(ctx, img.User, old, img.ID); err != nil {
			return err
		}
	}
	return s.updated(ctx, m, img, changed)
}

func (s *Service) updateAttributes(ctx context.Context, m *bus.Msg, req schemas.ImageUpdate) error {
	_, img, changed, err := s.modify(ctx, req.ID, OpUpdate, func(img *schemas.Image) error {
		next := map[string]string{}
		if !req.Replace {
			maps.Copy(next, img.Attributes)
		}
		for k, v := range req.Attributes {
			if v == "" && !req.Replace {
				delete(next, k)
			} else {
				next[k] = v
			}
		}
		if err := keepsCatalogAttributes(img, next); err != nil {
			return err
		}
		if len(next) > maxAttributes {
			return refuse("image %d would have %d attributes; at most %d are allowed", img.ID, len(next), maxAttributes)
		}
		if maps.Equal(next, img.Attributes) || (len(next) == 0 && len(img.Attributes) == 0) {
			return errNoChange
		}
		img.Attributes = next
		if len(next) == 0 {
			img.Attributes = nil
		}
		return nil
	})
	if err != nil {
		return err
	}
	return s.updated(ctx, m, img, changed)
}

// delete moves the image to DELETE, removes its blobs, its name and its
// record, then says so. A delete interrupted half way resumes from DELETE.
func (s *Service) delete(ctx context.Context, m *bus.Msg, id int64) error {
	var from State
	img, changed, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
		from = State(img.State)
		if from == StateDelete {
			return errNoChange // resuming an interrupted delete
		}
		if err := Allow(OpDelete, img); err != nil {
			return &refusal{lockedCode(img, err)}
		}
		return transition(img, StateDelete)
	})
	if errors.Is(err, ErrNotFound) {
		if m.Delivered > 1 { // the first delivery finished the job
			return nil
		}
		return &refusal{bus.WithCode(schemas.CodeNotFound, fmt.Errorf("image %d does not exist", id))}
	}
	if err != nil {
		return err
	}
	if changed {
		if err := s.emitState(ctx, id, from, StateDelete, "", causedBy(m.Envelope, schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
	}
	return s.finishDelete(ctx, img, m.Envelope)
}

// deleteBlobs removes everything stored for the image: its blob, and
// anything else under its key prefix (a half-written conversion).
func (s *Service) deleteBlobs(ctx context.Context, img *schemas.Image) error {
	ds, err := s.datastore(ctx, img.Datastore)
	if err != nil {
		return fmt.Errorf("image %d: its blobs cannot be deleted: %w", img.ID, err)
	}
	if err := s.blobs.DeletePrefix(ctx, ds.Bucket, imagePrefix(img.ID)); err != nil {
		return fmt.Errorf("image %d: delete blobs: %w", img.ID, err)
	}
	return nil
}
