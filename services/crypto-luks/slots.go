package cryptoluks

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// AttrLUKSSecret is the catalog attribute naming an image's secret.
const AttrLUKSSecret = schemas.AttrLUKSSecret

// slotChange is one slot-add, slot-remove or rotate command.
type slotChange struct {
	op      string
	imageID int64
	slot    int // slot-add: the slot asked for (-1: any); slot-remove: the slot to erase
}

func (s *Service) handleSlots(ctx context.Context, m *bus.Msg) error {
	ch := slotChange{op: m.Name, slot: -1}
	switch m.Name {
	case "slot-add":
		var cmd schemas.CryptoLuksSlotAdd
		if err := decode(m, &cmd); err != nil {
			return s.reject(ctx, m, err)
		}
		ch.imageID = cmd.ImageID
		if cmd.Slot != nil {
			ch.slot = int(*cmd.Slot)
		}
	case "slot-remove":
		var cmd schemas.CryptoLuksSlotRemove
		if err := decode(m, &cmd); err != nil {
			return s.reject(ctx, m, err)
		}
		ch.imageID, ch.slot = cmd.ImageID, int(cmd.Slot)
	case "rotate":
		var cmd schemas.CryptoLuksRotate
		if err := decode(m, &cmd); err != nil {
			return s.reject(ctx, m, err)
		}
		ch.imageID = cmd.ImageID
	}
	j, stop := s.startJob(ctx, m, ch.imageID, schemas.LuksPhaseDownload)
	ev, err := s.changeSlots(ctx, j, m, ch)
	stop()
	if err == nil {
		err = s.publish(ctx, m, "slots-changed", idToken(ch.imageID), ev)
	}
	return s.settle(ctx, m, &ch.imageID, err, nil)
}

// slotTarget finds the secret and the blob of image id in crypto-luks's
// own records: the catalog sends slot changes only for a LUKS image it
// has locked (its saga slots), so nothing here asks it again.
func (s *Service) slotTarget(ctx context.Context, id int64) (*Record, error) {
	secret, err := s.db.lookupImage(ctx, id)
	if errors.Is(err, errNoSecret) {
		return nil, refuse("image %d has no LUKS secret: crypto-luks did not make it (is it a LUKS image?)", id)
	}
	if err != nil {
		return nil, err
	}
	rec, _, err := s.db.get(ctx, secret)
	if err != nil {
		return nil, fmt.Errorf("image %d: %s %s: %w", id, AttrLUKSSecret, secret, err)
	}
	switch {
	case rec.ImageID != id:
		return nil, refuse("secret %s belongs to image %d, not image %d", secret, rec.ImageID, id)
	case rec.Blob == nil || rec.Blob.Dest == "":
		return nil, refuse("image %d has no blob yet: its encryption has not finished", id)
	}
	return rec, nil
}

// changeSlots downloads the image's volume, settles what an interrupted
// earlier change left, records the change as pending (with any new
// passphrase, sealed), amends the volume, uploads it over the same object
// and commits the record. Each step can be redone after a crash.
func (s *Service) changeSlots(ctx context.Context, j *job, m *bus.Msg, ch slotChange) (schemas.CryptoLuksSlotsChanged, error) {
	var ev schemas.CryptoLuksSlotsChanged
	rec, err := s.slotTarget(ctx, ch.imageID)
	if err != nil {
		return ev, err
	}
	source := rec.Blob.Dest
	if rec.LastCommand == m.Envelope.ID && rec.Blob != nil {
		return slotsEvent(rec), nil // done before; only the event was lost
	}
	dk, err := s.keys.Unwrap(rec.Secret, rec.Wrapped)
	if err != nil {
		return ev, terminal(err)
	}
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("slots-%d-*", ch.imageID))
	if err != nil {
		return ev, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "disk.luks")
	if err := s.download(ctx, j, source, path); err != nil {
		return ev, err
	}
	j.SetPhase(schemas.LuksPhaseAmend, 0)
	if rec, err = s.reconcile(ctx, rec, dk, path); err != nil {
		return ev, err
	}
	if rec.LastCommand == m.Envelope.ID {
		// The upload happened before a crash; record what is stored now.
		return s.commitBlob(ctx, j, rec, source, path, false)
	}
	if rec, err = s.plan(ctx, rec, dk, path, ch, m.Envelope.ID); err != nil {
		return ev, err
	}
	if err := s.amend(ctx, rec, dk, path); err != nil {
		return ev, err
	}
	return s.commitBlob(ctx, j, rec, source, path, true)
}

// plan records the change as pending, with a new sealed passphrase when
// it adds a slot.
func (s *Service) plan(ctx context.Context, rec *Record, dk keywrap.DataKey, path string, ch slotChange, cmdID string) (*Record, error) {
	info, err := s.luks.Info(ctx, path)
	if err != nil {
		return nil, err
	}
	p := &Pending{Command: cmdID, Slot: -1}
	switch ch.op {
	case "slot-add", "rotate":
		p.Slot = ch.slot
		if p.Slot < 0 {
			p.Slot = info.FreeSlot()
		}
		switch {
		case p.Slot < 0:
			return nil, refuse("image %d: all %d key slots are in use; remove one first", rec.ImageID, luks.MaxSlots)
		case info.Slots[p.Slot]:
			return nil, refuse("image %d: key slot %d is in use (active: %s)", rec.ImageID, p.Slot, luks.FormatSlots(info.Active()))
		}
		pass, err := luks.NewPassphrase()
		if err != nil {
			return nil, err
		}
		if p.Passphrase, err = dk.Seal(slotLabel(p.Slot), pass); err != nil {
			return nil, err
		}
		if ch.op == "rotate" {
			p.Remove = []int{rec.Primary}
		}
	case "slot-remove":
		active := info.Active()
		switch {
		case !slices.Contains(active, ch.slot):
			return nil, refuse("image %d: key slot %d is not in use (active: %s)", rec.ImageID, ch.slot, luks.FormatSlots(active))
		case len(active) == 1:
			return nil, refuse("image %d: key slot %d is its only key slot; erasing it would make the image unreadable", rec.ImageID, ch.slot)
		case len(rec.Slots) == 1 && rec.Slots[0].Slot == ch.slot:
			return nil, refuse("image %d: key slot %d holds the only passphrase crypto-luks knows; add a slot first", rec.ImageID, ch.slot)
		}
		p.Remove = []int{ch.slot}
	}
	return s.db.update(ctx, rec.Secret, func(r *Record) error {
		r.Pending = p
		return nil
	})
}

// amend applies rec.Pending to the volume at path, unlocking with the
// primary passphrase.
func (s *Service) amend(ctx context.Context, rec *Record, dk keywrap.DataKey, path string) error {
	p := rec.Pending
	unlock, err := s.openSlot(rec, dk, rec.Primary)
	if err != nil {
		return terminal(err)
	}
	if p.Slot >= 0 {
		pass, err := dk.Open(slotLabel(p.Slot), p.Passphrase)
		if err != nil {
			return terminal(err)
		}
		if _, err := s.luks.AddKey(ctx, path, unlock, pass, p.Slot); err != nil {
			return classifyAmend(rec, err)
		}
	}
	for _, n := range p.Remove {
		if err := s.luks.RemoveSlot(ctx, path, unlock, n); err != nil {
			return classifyAmend(rec, err)
		}
	}
	return nil
}

func classifyAmend(rec *Record, err error) error {
	if errors.Is(err, luks.ErrWrongPassphrase) {
		return terminal(fmt.Errorf("image %d: the stored passphrase of slot %d does not open its volume: %w", rec.ImageID, rec.Primary, err))
	}
	return terminalUnlessTransient(fmt.Errorf("image %d: %w", rec.ImageID, err))
}

func (s *Service) openSlot(rec *Record, dk keywrap.DataKey, n int) ([]byte, error) {
	sl, ok := rec.slot(n)
	if !ok {
		return nil, fmt.Errorf("secret %s has no passphrase for slot %d", rec.Secret, n)
	}
	return dk.Open(slotLabel(n), sl.Passphrase)
}

// reconcile settles what an interrupted change left, from the volume as
// stored: a pending new passphrase that opens it was applied (it is kept),
// one that does not was never uploaded (it is dropped); slots the header
// no longer has are forgotten.
func (s *Service) reconcile(ctx context.Context, rec *Record, dk keywrap.DataKey, path string) (*Record, error) {
	info, err := s.luks.Info(ctx, path)
	if err != nil {
		return nil, terminal(fmt.Errorf("image %d: %w", rec.ImageID, err))
	}
	applied := false
	if p := rec.Pending; p != nil {
		if p.Slot >= 0 {
			pass, err := dk.Open(slotLabel(p.Slot), p.Passphrase)
			if err != nil {
				return nil, terminal(err)
			}
			applied = info.Slots[p.Slot] && s.luks.Verify(ctx, path, pass) == nil
		} else {
			applied = !slices.ContainsFunc(p.Remove, func(n int) bool { return info.Slots[n] })
		}
	}
	if rec.Pending == nil && sameSlots(rec, info) {
		return rec, nil
	}
	return s.db.update(ctx, rec.Secret, func(r *Record) error {
		if applied && r.Pending != nil {
			applyPending(r)
		}
		r.Pending = nil
		r.Slots = slices.DeleteFunc(r.Slots, func(sl Slot) bool { return !info.Slots[sl.Slot] })
		if len(r.Slots) == 0 {
			return terminal(fmt.Errorf("image %d: none of the key slots crypto-luks holds a passphrase for is active in its volume any more", r.ImageID))
		}
		if _, ok := r.slot(r.Primary); !ok {
			r.Primary = r.Slots[0].Slot
		}
		return nil
	})
}

func sameSlots(rec *Record, info luks.Info) bool {
	for _, sl := range rec.Slots {
		if !info.Slots[sl.Slot] {
			return false
		}
	}
	return true
}

// applyPending moves a pending change into the record's slots.
func applyPending(r *Record) {
	p := r.Pending
	delta := &SlotDelta{Removed: p.Remove}
	r.Slots = slices.DeleteFunc(r.Slots, func(sl Slot) bool { return slices.Contains(p.Remove, sl.Slot) || sl.Slot == p.Slot })
	if p.Slot >= 0 {
		r.Slots = append(r.Slots, Slot{Slot: p.Slot, Passphrase: p.Passphrase, CreatedAt: time.Now().UTC()})
		delta.Added = []int{p.Slot}
		if slices.Contains(p.Remove, r.Primary) {
			r.Primary = p.Slot // rotate: the new passphrase is the one handed out
		}
	}
	slices.SortFunc(r.Slots, func(a, b Slot) int { return a.Slot - b.Slot })
	if _, ok := r.slot(r.Primary); !ok && len(r.Slots) > 0 {
		r.Primary = r.Slots[0].Slot
	}
	r.LastCommand, r.LastChange, r.Pending = p.Command, delta, nil
}

// commitBlob uploads the amended volume (when upload) over the image's
// blob and records the change and the new blob.
func (s *Service) commitBlob(ctx context.Context, j *job, rec *Record, source, path string, upload bool) (schemas.CryptoLuksSlotsChanged, error) {
	bucket, key, err := blob.ParseURL(source)
	if err != nil {
		return schemas.CryptoLuksSlotsChanged{}, terminal(err)
	}
	info, err := s.luks.Info(ctx, path)
	if err != nil {
		return schemas.CryptoLuksSlotsChanged{}, err
	}
	var b blob.Info
	if upload {
		b, err = s.upload(ctx, j, path, bucket, key)
	} else {
		b, err = s.hashFile(path, bucket, key)
	}
	if err != nil {
		return schemas.CryptoLuksSlotsChanged{}, err
	}
	rec, err = s.db.update(ctx, rec.Secret, func(r *Record) error {
		if r.Pending != nil {
			applyPending(r)
		}
		r.Blob = &BlobInfo{Dest: source, Size: b.Size, SHA256: b.SHA256, VirtualSize: info.VirtualSize, S3Checksum: b.S3Checksum}
		return nil
	})
	if err != nil {
		return schemas.CryptoLuksSlotsChanged{}, err
	}
	s.log.Info("key slots changed", "image_id", rec.ImageID, "secret", rec.Secret, "slots", rec.slotNumbers(),
		"primary", rec.Primary, "sha256", b.SHA256)
	return slotsEvent(rec), nil
}

func slotsEvent(r *Record) schemas.CryptoLuksSlotsChanged {
	ev := schemas.CryptoLuksSlotsChanged{ImageID: r.ImageID, Secret: r.Secret, Primary: int64(r.Primary),
		Dest: r.Blob.Dest, Size: r.Blob.Size, SHA256: r.Blob.SHA256, Slots: int64s(r.slotNumbers())}
	if r.LastChange != nil {
		ev.Added, ev.Removed = int64s(r.LastChange.Added), int64s(r.LastChange.Removed)
	}
	return ev
}

func int64s(v []int) []int64 {
	out := make([]int64, len(v))
	for i, n := range v {
		out[i] = int64(n)
	}
	return out
}
