package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// Key-slot changes of a LUKS image (saga slots): crypto-luks rewrites the
// image's blob, so the image is locked the way every blob rewrite locks
// it.
//
//	image-slot-add / -remove / -rotate {id} ──► image READY or DISABLED, not in
//	     use, LUKS (else refused) ──► LOCKED (compare-and-set: a VM's
//	     image-use is refused from now on) ──► crypto-luks.slot-add /
//	     slot-remove / rotate {image_id}
//	crypto-luks.slots-changed ──► new size and SHA-256 recorded, back to READY
//	     (or DISABLED) in the same write ──► image-slots-changed answers
//	crypto-luks.failed ──► back to READY (or DISABLED), blob unchanged ──►
//	     failed answers
//
// A deadline fails the saga (the caller hears so) but keeps the lock:
// crypto-luks may still be writing, and its report gives the image back.
const (
	KindSlots  = "slots"
	PhaseSlots = saga.Phase("slots")
	// EvtImageSlotsChanged answers a key-slot command.
	EvtImageSlotsChanged = schemas.EventCatalogImageSlotsChanged
)

var (
	evtSlotsChanged = eventKey(cryptoService, schemas.EventCryptoLUKSSlotsChanged)
	evtSlotsFailed  = eventKey(cryptoService, schemas.EventCryptoLUKSFailed)
)

// slotsData is the state of a slots saga.
type slotsData struct {
	ImageID   int64  `json:"image_id"`
	CommandID string `json:"command_id"`
	// Command is the subject of the catalog command.
	Command string `json:"command"`
	// Verb is crypto-luks's command: slot-add, slot-remove or rotate.
	Verb string `json:"verb"`
	Slot *int64 `json:"slot,omitempty"`
	// From is the state the image is given back in.
	From State `json:"from"`
	// Source and Secret are the image's blob and secret when locked;
	// crypto-luks must report rewriting that blob.
	Source string `json:"source"`
	Secret string `json:"secret"`
}

func (s *Service) slotsFlow() *flow {
	return &flow{
		kind: KindSlots, what: "the key-slot change", fail: s.slotsExpired,
		phases: []phase{{
			name:     PhaseSlots,
			commands: []string{"crypto-luks.slot-add", "crypto-luks.slot-remove", "crypto-luks.rotate"},
			on:       map[string]eventHandler{evtSlotsChanged: s.slotsChanged, evtSlotsFailed: s.slotsFailed},
			deadline: s.cfg.EncryptDeadline,
			expired: func(sg *saga.Saga, d time.Duration) string {
				var data slotsData
				_ = sg.Decode(&data)
				return fmt.Sprintf("changing the key slots of image %d did not finish within %s; the image stays LOCKED until crypto-luks reports the outcome", data.ImageID, d)
			},
		}},
		// A change crypto-luks was asked for outside a catalog saga: the
		// record still follows the blob's digest.
		unclaimed: map[string]eventHandler{evtSlotsChanged: s.recordSlots},
	}
}

// slotCommand reads a key-slot command into the saga's data.
func slotCommand(m *bus.Msg) (slotsData, error) {
	var d slotsData
	var err error
	switch m.Name {
	case schemas.CommandCatalogImageSlotAdd:
		var req schemas.ImageSlotAdd
		err = decode(m, &req)
		d = slotsData{ImageID: req.ID, Verb: schemas.CommandCryptoLUKSSlotAdd, Slot: req.Slot}
	case schemas.CommandCatalogImageSlotRemove:
		var req schemas.ImageSlotRemove
		err = decode(m, &req)
		d = slotsData{ImageID: req.ID, Verb: schemas.CommandCryptoLUKSSlotRemove, Slot: &req.Slot}
	default:
		var req schemas.ImageSlotRotate
		err = decode(m, &req)
		d = slotsData{ImageID: req.ID, Verb: schemas.CommandCryptoLUKSRotate}
	}
	d.CommandID, d.Command = m.Envelope.ID, m.Subject
	return d, err
}

// changeSlots handles image-slot-add, image-slot-remove and
// image-slot-rotate: it locks the image and asks crypto-luks. Like create,
// each step tolerates having been done already.
func (s *Service) changeSlots(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	d, err := slotCommand(m)
	if err != nil {
		return processed{ImageID: -1}, err
	}
	res := processed{ImageID: d.ImageID}
	img, err := s.images.existing(ctx, d.ImageID)
	if err != nil {
		return res, err
	}
	if prior == nil {
		if err := Allow(OpSlots, img); err != nil {
			return res, &refusal{err}
		}
	}
	if res.SagaID, err = s.claimSaga(ctx, m, prior, d.ImageID); err != nil {
		return res, err
	}
	d.From, d.Source, d.Secret = State(img.State), img.Source, img.Attributes[AttrLUKSSecret]
	// A redelivery finds the saga stored with the state it locked from.
	sg, err := startData(ctx, s, res.SagaID, KindSlots, d.ImageID, &d)
	if err != nil {
		return res, err
	}
	return res, s.lockThenSend(ctx, sg,
		func() error { return s.lockForSlots(ctx, m, sg.ID, d) },
		func() error {
			return s.send(ctx, m.Envelope, sg.ID, PhaseSlots, d.ImageID, cryptoService, d.Verb, d.command())
		})
}

// command is the crypto-luks command of the change.
func (d slotsData) command() any {
	switch d.Verb {
	case schemas.CommandCryptoLUKSSlotAdd:
		return schemas.CryptoLuksSlotAdd{ImageID: d.ImageID, Slot: d.Slot}
	case schemas.CommandCryptoLUKSSlotRemove:
		return schemas.CryptoLuksSlotRemove{ImageID: d.ImageID, Slot: *d.Slot}
	}
	return schemas.CryptoLuksRotate{ImageID: d.ImageID}
}

// lockForSlots moves the image from d.From to LOCKED for saga sagaID, in
// one compare-and-set: a VM that took it meanwhile makes it a refusal.
func (s *Service) lockForSlots(ctx context.Context, m *bus.Msg, sagaID string, d slotsData) error {
	return s.lockFor(ctx, m, sagaID, d.ImageID, d.From, "slots", func(img *schemas.Image) error {
		if err := Allow(OpSlots, img); err != nil {
			return &refusal{err}
		}
		if State(img.State) != d.From || img.Source != d.Source {
			return refuse("image %d changed while its key-slot change started (now %s): try again", img.ID, img.State)
		}
		return nil
	})
}

// slotsChanged records crypto-luks's rewritten blob and gives the image
// back, then answers the command.
func (s *Service) slotsChanged(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.CryptoLuksSlotsChanged, slotsData](m, sg)
	if err != nil {
		return err
	}
	if m.Envelope.CausationID != envelope.StepID(sg.ID, string(PhaseSlots)) {
		return s.recordSlots(ctx, m, nil) // a change outside this saga
	}
	if sg.Status == saga.StatusSucceeded {
		return nil // a duplicate
	}
	if ev.Dest != d.Source || ev.Secret != d.Secret {
		if err := s.giveBack(ctx, m, sg.ID, d, nil); err != nil {
			return err
		}
		return s.endSlots(ctx, sg, d, schemas.CodeInternal, fmt.Sprintf("crypto-luks rewrote %s (secret %s), but image %d's blob is %s (secret %s)",
			ev.Dest, ev.Secret, d.ImageID, d.Source, d.Secret))
	}
	if err := s.giveBack(ctx, m, sg.ID, d, &ev); err != nil {
		return err
	}
	if sg.Status != saga.StatusRunning {
		s.log.Info("key slots changed after their saga failed; the image is given back", "image", d.ImageID, "saga", sg.ID)
		return nil
	}
	answer := schemas.ImageSlotsChanged{ID: d.ImageID, Slots: ev.Slots, Primary: ev.Primary, Added: ev.Added,
		Removed: ev.Removed, Size: ev.Size, SHA256: ev.SHA256, State: schemas.ImageState(d.From)}
	if _, err := s.bus.Event(ctx, EvtImageSlotsChanged, idToken(d.ImageID), answer, answers(sg.ID, d, EvtImageSlotsChanged)...); err != nil {
		return err
	}
	_, err = s.sagas.Succeed(ctx, sg.ID, "key slots changed")
	return err
}

// slotsFailed gives the image back, its blob unchanged, when crypto-luks
// refuses or fails the saga's command.
func (s *Service) slotsFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.Failure, slotsData](m, sg)
	if err != nil {
		return err
	}
	if sg.Status == saga.StatusSucceeded || m.Envelope.CausationID != envelope.StepID(sg.ID, string(PhaseSlots)) {
		return nil // late, or about another command on this image
	}
	if err := s.giveBack(ctx, m, sg.ID, d, nil); err != nil {
		return err
	}
	return s.endSlots(ctx, sg, d, ev.Code, fmt.Sprintf("%s: %s", d.Verb, ev.Error))
}

// giveBack moves the image from LOCKED back to the state it was locked
// from, with the rewritten blob's size and digest when ev reports one.
func (s *Service) giveBack(ctx context.Context, m *bus.Msg, sagaID string, d slotsData, ev *schemas.CryptoLuksSlotsChanged) error {
	img, changed, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		if img.SagaID != sagaID || State(img.State) != StateLocked {
			return errNoChange // given back already (a duplicate), or not this saga's
		}
		if ev != nil {
			img.SHA256, img.StoredSize = ev.SHA256, ev.Size
		}
		return transition(img, d.From)
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil || !changed {
		return err
	}
	if err := s.emitState(ctx, d.ImageID, StateLocked, d.From, "", causedBy(m.Envelope, "slots-done/"+schemas.EventCatalogStateChanged)); err != nil {
		return err
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, "slots-done/"+schemas.EventCatalogImageUpdated))
}

// slotsExpired is the flow's fail: the caller learns the change did not
// finish in time; the lock stays until crypto-luks reports.
func (s *Service) slotsExpired(ctx context.Context, sg *saga.Saga, code, reason string, _ *envelope.Envelope) error {
	var d slotsData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	return s.endSlots(ctx, sg, d, code, reason)
}

// endSlots answers a failed key-slot change and fails its saga.
func (s *Service) endSlots(ctx context.Context, sg *saga.Saga, d slotsData, code, reason string) error {
	if sg.Status != saga.StatusRunning {
		return nil
	}
	id := d.ImageID
	if err := s.emitFailed(ctx, idToken(id), &id, d.Command, code, reason, answers(sg.ID, d, "slots-failed/"+schemas.EventCatalogFailed)); err != nil {
		return err
	}
	return s.settle(ctx, sg, reason)
}

// answers are the options of the event that answers the saga's command:
// caused by it, so the sender's bus.Call sees it.
func answers(sagaID string, d slotsData, what string) []bus.PubOption {
	return answersCommand(sagaID, d.CommandID, what)
}

// recordSlots records the digest and size of a LUKS blob crypto-luks
// rewrote to change its key slots outside a catalog saga, so the record
// keeps describing the blob (launchers check what they fetch against it).
// A report about another blob or secret than the image's is ignored with
// a log line.
func (s *Service) recordSlots(ctx context.Context, m *bus.Msg, _ *saga.Saga) error {
	var ev schemas.CryptoLuksSlotsChanged
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	img, changed, err := s.images.Update(ctx, ev.ImageID, func(img *schemas.Image) error {
		if img.Source != ev.Dest || img.Attributes[AttrLUKSSecret] != ev.Secret {
			return errNoChange
		}
		if img.SHA256 == ev.SHA256 && img.StoredSize == ev.Size {
			return errNoChange
		}
		img.SHA256, img.StoredSize = ev.SHA256, ev.Size
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if !changed {
		if img.Source != ev.Dest || img.Attributes[AttrLUKSSecret] != ev.Secret {
			s.log.Warn("ignoring crypto-luks slots-changed about another blob or secret", "image", ev.ImageID, "dest", ev.Dest, "source", img.Source)
		}
		return nil
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, []bus.PubOption{bus.CausedBy(m.Envelope)})
}
