package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// LUKS images are made by crypto-luks, driven by two sagas of the catalog:
//
//	encrypt     image-encrypt {id, name}: a new image (the source's type and
//	            datastore, not persistent) LOCKED ──► crypto-luks.encrypt
//	luks-create image-create {luks: true, size_mib}: a new DATABLOCK (or OS)
//	            LOCKED ──► crypto-luks.create
//
// Both wait in phase encrypt for crypto-luks.encrypted, record the secret,
// then commit as an import does (the blob is checked; READY with format
// luks, attributes LUKS_SECRET and, for encrypt, ENCRYPTED_FROM). A
// failure (crypto-luks.failed, a blob that does not match, a deadline) puts
// the image in ERROR; compensation deletes the destination blob and asks
// crypto-luks to forget a secret it already made.
const (
	KindEncrypt    = "encrypt"
	KindLuksCreate = "luks-create"
	PhaseEncrypt   = saga.Phase("encrypt")
)

// The service the LUKS sagas talk to, and the events they wait for.
const cryptoService = schemas.ServiceCryptoLUKS

var (
	evtEncrypted  = eventKey(cryptoService, schemas.EventCryptoLUKSEncrypted)
	evtLuksFailed = eventKey(cryptoService, schemas.EventCryptoLUKSFailed)
)

// Attributes the catalog sets on LUKS images. They cannot be set or
// changed with image-create or image-update: LUKS_SECRET names the secret
// that opens the image and is deleted with it.
const (
	AttrLUKSSecret    = schemas.AttrLUKSSecret
	AttrEncryptedFrom = schemas.AttrEncryptedFrom
)

// luksData is the state of a LUKS saga. It holds importData's fields, so
// the commit phase (and failImport) are the import's own.
type luksData struct {
	importData
	// SourceID, Source and SourceFormat: the image encrypted (encrypt).
	SourceID     int64              `json:"source_id,omitempty"`
	Source       string             `json:"source,omitempty"`
	SourceFormat schemas.DiskFormat `json:"source_format,omitempty"`
	// SizeMiB is the size of an empty volume (luks-create).
	SizeMiB int64 `json:"size_mib,omitempty"`
	// Secret is the secret crypto-luks made, once reported; compensation
	// deletes it.
	Secret string `json:"secret,omitempty"`
}

// luksFlows declare the two LUKS sagas: crypto-luks encrypts (or makes an
// empty volume), then the image is committed as an import is.
func (s *Service) luksFlows() []*flow {
	encrypt := func() phase {
		return phase{
			name:     PhaseEncrypt,
			commands: []string{"crypto-luks.encrypt", "crypto-luks.create"},
			on:       map[string]eventHandler{evtEncrypted: s.encrypted, evtLuksFailed: s.luksFailed},
			deadline: s.cfg.EncryptDeadline, compensate: s.compensateLuks, expired: luksExpired,
		}
	}
	mk := func(kind, what string) *flow {
		return &flow{kind: kind, what: what, reporter: cryptoService, fail: s.failImportCode,
			phases: []phase{encrypt(), s.commitPhase(what)},
			// An encrypted report after its saga failed (or its image
			// went away): its blob and secret have no owner.
			unclaimed: map[string]eventHandler{evtEncrypted: unclaimedReport(s.orphanLuks)}}
	}
	return []*flow{mk(KindEncrypt, "the encryption"), mk(KindLuksCreate, "the LUKS volume")}
}

// keepsCatalogAttributes refuses a change of the attributes only the
// catalog sets.
func keepsCatalogAttributes(img *schemas.Image, next map[string]string) error {
	for _, k := range []string{AttrLUKSSecret, AttrEncryptedFrom} {
		if next[k] != img.Attributes[k] {
			return refuse("attribute %s is set by the catalog on LUKS images: it cannot be changed", k)
		}
	}
	return nil
}

// luksDest is where crypto-luks stores a LUKS image's blob: a fresh key of
// the saga, which crypto-luks checks is the derived one.
func luksDest(ds Datastore, id int64, sagaID string) string {
	return blob.URL(ds.Bucket, blob.AttemptPrefix(id, sagaID)+"disk."+string(schemas.DiskFormatLUKS))
}

// encrypt registers the new image of an image-encrypt LOCKED and starts
// its saga. Like create, each step tolerates having been done already.
func (s *Service) encrypt(ctx context.Context, m *bus.Msg, prior *processed) (processed, error) {
	var req schemas.ImageEncrypt
	if err := decode(m, &req); err != nil {
		return processed{ImageID: -1}, err
	}
	// Refusals before the new image exists are about the source.
	none := processed{ImageID: req.ID}
	src, err := s.images.existing(ctx, req.ID)
	if err != nil {
		return none, err
	}
	// A redelivery resuming the command does not check again: the first
	// delivery did, and the source may be in use by now.
	if err := Allow(OpEncrypt, src); err != nil && prior == nil {
		return none, &refusal{err}
	}
	ds, err := s.datastore(ctx, src.Datastore)
	if err != nil {
		return none, err
	}
	res, err := s.claimIDs(ctx, m, prior, req.Name)
	if err != nil {
		return none, err
	}
	id, sagaID := res.ImageID, res.SagaID
	d := luksData{
		importData: importData{ImageID: id, CommandID: m.Envelope.ID, Command: m.Subject, Dest: luksDest(ds, id, sagaID),
			SetAttributes: map[string]string{AttrEncryptedFrom: idToken(src.ID)}},
		SourceID: src.ID, Source: src.Source, SourceFormat: src.Format,
	}
	start := func() error { return s.start(ctx, sagaID, KindEncrypt, id, d, d.Dest) }
	if err := s.register(ctx, m, res, start, encryptedRecord(src, req, id, sagaID, s.cfg), nil); err != nil {
		return res, err
	}
	return res, s.sendLuks(ctx, m, sagaID, d)
}

// encryptedRecord is the LOCKED record of an encryption of src: the
// source's type, datastore, device prefix and attributes (provenance), not
// persistent.
func encryptedRecord(src *schemas.Image, req schemas.ImageEncrypt, id int64, sagaID string, cfg Config) *schemas.Image {
	t := now()
	attrs := maps.Clone(src.Attributes)
	delete(attrs, AttrLUKSSecret)
	delete(attrs, AttrEncryptedFrom)
	if len(attrs) == 0 {
		attrs = nil
	}
	desc := req.Description
	if desc == "" {
		desc = fmt.Sprintf("LUKS-encrypted copy of image %d (%s)", src.ID, src.Name)
	}
	return &schemas.Image{
		ID: id, Name: req.Name,
		Datastore: src.Datastore, Type: src.Type, DevPrefix: src.DevPrefix,
		State: schemas.ImageStateLocked, Description: desc, Attributes: attrs,
		Origin: src.Source, SagaID: sagaID, CreatedAt: t, UpdatedAt: t,
		Size: src.Size, // the source's: what the quotas count until the volume is made
	}
}

// sendLuks asks crypto-luks to encrypt the source (encrypt) or to make an
// empty volume (luks-create). Its ID is the saga step's, so a resend is a
// duplicate JetStream drops.
func (s *Service) sendLuks(ctx context.Context, m *bus.Msg, sagaID string, d luksData) error {
	if d.SizeMiB > 0 {
		return s.send(ctx, m.Envelope, sagaID, PhaseEncrypt, d.ImageID, cryptoService, "create",
			schemas.CryptoLuksCreate{ImageID: d.ImageID, SizeMiB: d.SizeMiB, Dest: d.Dest})
	}
	return s.send(ctx, m.Envelope, sagaID, PhaseEncrypt, d.ImageID, cryptoService, "encrypt",
		schemas.CryptoLuksEncrypt{ImageID: d.ImageID, Source: d.Source, SourceFormat: d.SourceFormat, Dest: d.Dest})
}

// sendSecretDelete asks crypto-luks to forget a secret. The ID is derived
// from the secret, so however often it is sent (a resumed delete, a
// compensation and a late report) crypto-luks gets it once per
// duplicate window; deleting a missing secret is not an error there.
func (s *Service) sendSecretDelete(ctx context.Context, secret string, imageID int64, opts ...bus.PubOption) error {
	opts = append(opts, bus.WithID(envelope.StepID(secret, "secret-delete")), bus.WithSubject(idToken(imageID)))
	_, err := s.bus.Command(ctx, cryptoService, "secret-delete",
		schemas.CryptoLuksSecretDelete{Secret: secret, ImageID: imageID}, opts...)
	if err != nil {
		return fmt.Errorf("image %d: ask %s to delete secret %s: %w", imageID, cryptoService, secret, err)
	}
	return nil
}

// compensateLuks deletes what a failed LUKS saga made: the destination
// blob and, once known, the secret.
func (s *Service) compensateLuks(ctx context.Context, sg *saga.Saga) error {
	var d luksData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	var errs []error
	for _, u := range append(append([]string{}, sg.Owned...), d.Dest) {
		if err := s.deleteURL(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	if d.Secret != "" {
		if err := s.sendSecretDelete(ctx, d.Secret, d.ImageID, bus.WithCorrelation(sg.ID)); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// encrypted records crypto-luks's report and commits the image.
func (s *Service) encrypted(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.CryptoLuksEncrypted, luksData](m, sg)
	if err != nil {
		return err
	}
	switch {
	case sg.Status == saga.StatusSucceeded:
		if d.Secret != ev.Secret {
			s.log.Error("crypto-luks reported a second secret for an image already committed", "image", ev.ImageID, "secret", d.Secret, "reported", ev.Secret)
		}
		return nil // a duplicate
	case sg.Status != saga.StatusRunning:
		// The saga failed (deadline) while crypto-luks worked: its blob
		// and secret have no owner.
		s.log.Info("deleting a LUKS image that arrived after its saga failed", "image", ev.ImageID, "dest", ev.Dest)
		return s.orphanLuks(ctx, ev)
	case sg.Phase == PhaseEncrypt:
		if sg, err = s.recordEncrypted(ctx, sg.ID, ev); err != nil {
			return err
		}
		if ev.Dest != d.Dest {
			s.deleteStray(ctx, ev.ImageID, ev.Dest)
			return s.failImport(ctx, sg, fmt.Sprintf("crypto-luks stored the disk at %s instead of %s", ev.Dest, d.Dest), &m.Envelope)
		}
		sg, err = s.advance(ctx, sg, PhaseEncrypt, PhaseCommit, "encrypted")
		if errors.Is(err, saga.ErrWrongPhase) {
			return nil // a duplicate delivery advanced it first
		}
		if err != nil {
			return err
		}
	case sg.Phase != PhaseCommit:
		return nil
	}
	return s.commit(ctx, sg, &m.Envelope)
}

// recordEncrypted keeps the secret (for compensation) and the report (for
// a commit resumed after a crash) in the saga.
func (s *Service) recordEncrypted(ctx context.Context, id string, ev schemas.CryptoLuksEncrypted) (*saga.Saga, error) {
	return updateData(ctx, s.sagas, id, PhaseEncrypt, func(_ *saga.Saga, d *luksData) {
		d.Secret = ev.Secret
		d.Result = &schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest, Format: schemas.DiskFormatLUKS,
			VirtualSize: ev.VirtualSize, Size: ev.Size, SHA256: ev.SHA256, S3Checksum: ev.S3Checksum}
		if d.SetAttributes == nil {
			d.SetAttributes = map[string]string{}
		}
		d.SetAttributes[AttrLUKSSecret] = ev.Secret
	})
}

// orphanLuks deletes a LUKS blob and secret no running saga owns, unless
// the image records them (a duplicate report about a committed image).
func (s *Service) orphanLuks(ctx context.Context, ev schemas.CryptoLuksEncrypted) error {
	img, _, err := s.images.Get(ctx, ev.ImageID)
	switch {
	case err == nil && img.Attributes[AttrLUKSSecret] == ev.Secret:
		return nil
	case err != nil && !errors.Is(err, ErrNotFound):
		return err
	}
	if img == nil || img.Source != ev.Dest {
		s.deleteStray(ctx, ev.ImageID, ev.Dest)
	}
	return s.sendSecretDelete(ctx, ev.Secret, ev.ImageID)
}

// deleteStray deletes a reported blob if it lies where the image's blobs
// live (anything else is not the catalog's to delete).
func (s *Service) deleteStray(ctx context.Context, id int64, u string) {
	if err := s.deleteOwned(ctx, schemas.ConverterConverted{ImageID: id, Dest: u}); err != nil {
		s.log.Warn("deleting a stray LUKS blob", "image", id, "dest", u, "err", err)
	}
}

// luksFailed ends a LUKS saga in ERROR when crypto-luks reports that the
// saga's command failed (other crypto-luks failures, such as a refused
// slot-add, are not the catalog's business).
func (s *Service) luksFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	ev, d, err := decodeStep[schemas.Failure, luksData](m, sg)
	if err != nil {
		return err
	}
	switch {
	case sg.Status.Finished() || sg.Phase != PhaseEncrypt:
		return nil // late, or a duplicate
	case m.Envelope.CorrelationID != sg.ID && m.Envelope.CausationID != envelope.StepID(sg.ID, string(PhaseEncrypt)):
		return nil // about another command on this image
	}
	verb := "encrypt"
	if d.SizeMiB > 0 {
		verb = "create"
	}
	return s.failImportCode(ctx, sg, ev.Code, fmt.Sprintf("%s: %s", verb, ev.Error), &m.Envelope)
}

// luksExpired words a deadline passed while crypto-luks worked.
func luksExpired(sg *saga.Saga, d time.Duration) string {
	var data luksData
	_ = sg.Decode(&data)
	if sg.Kind == KindLuksCreate {
		return fmt.Sprintf("creating an empty LUKS volume of %d MiB did not finish within %s", data.SizeMiB, d)
	}
	return fmt.Sprintf("encrypting image %d did not finish within %s", data.SourceID, d)
}
