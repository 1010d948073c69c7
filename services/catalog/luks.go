package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strconv"
	"strings"
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

// The service the LUKS sagas talk to.
const cryptoService = "crypto-luks"

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

func isLuksKind(kind string) bool { return kind == KindEncrypt || kind == KindLuksCreate }

func (s *Service) luksDefinitions() []saga.Definition {
	phases := map[saga.Phase]saga.PhaseSpec{
		PhaseEncrypt: {Deadline: s.cfg.EncryptDeadline, Compensate: s.compensateLuks},
		PhaseCommit:  {Deadline: s.cfg.CommitDeadline},
	}
	return []saga.Definition{{Kind: KindEncrypt, Phases: phases}, {Kind: KindLuksCreate, Phases: phases}}
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
	src, _, err := s.images.Get(ctx, req.ID)
	if errors.Is(err, ErrNotFound) {
		return none, refuse("image %d does not exist", req.ID)
	}
	if err != nil {
		return none, err
	}
	// A redelivery resuming the command does not check again: the first
	// delivery did, and the source may be in use by now.
	if err := Allow(OpEncrypt, src); err != nil && prior == nil {
		return none, &refusal{err}
	}
	ds, err := s.datastore(src.Datastore)
	if err != nil {
		return none, err
	}
	if prior == nil {
		if held, err := s.images.lookupName(ctx, s.cfg.User, req.Name); err == nil {
			return none, refuse("an image named %q already exists for user %s (ID %d): image names are unique per owner", req.Name, s.cfg.User, held.ID)
		}
		if prior, err = s.claimNewImage(ctx, m); err != nil {
			return none, err
		}
	}
	id, sagaID := prior.ImageID, prior.SagaID
	res := processed{ImageID: id, SagaID: sagaID}
	d := luksData{
		importData: importData{ImageID: id, CommandID: m.Envelope.ID, Command: m.Subject, Dest: luksDest(ds, id, sagaID),
			SetAttributes: map[string]string{AttrEncryptedFrom: idToken(src.ID)}},
		SourceID: src.ID, Source: src.Source, SourceFormat: src.Format,
	}
	if err := s.startLuksSaga(ctx, sagaID, KindEncrypt, d); err != nil {
		return res, err
	}
	if err := s.images.claimName(ctx, s.cfg.User, req.Name, id); err != nil {
		if isRefusal(err) {
			s.abandon(ctx, sagaID, err.Error())
		}
		return res, err
	}
	img, err := s.insert(ctx, encryptedRecord(src, req, id, sagaID, s.cfg))
	if err != nil {
		return res, err
	}
	if err := s.announce(ctx, m, img); err != nil {
		return res, err
	}
	return res, s.sendLuks(ctx, m, sagaID, d)
}

// claimNewImage allocates an image ID and a saga ID for a command and
// records them, so a redelivery resumes with the same ones.
func (s *Service) claimNewImage(ctx context.Context, m *bus.Msg) (*processed, error) {
	id, err := s.images.NextID(ctx)
	if err != nil {
		return nil, err
	}
	sagaID, err := s.chooseSagaID(ctx, m)
	if err != nil {
		return nil, err
	}
	won, err := s.dedupClaim(ctx, m.Envelope.ID, processed{ImageID: id, SagaID: sagaID})
	if err != nil {
		return nil, err
	}
	return &won, nil
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
		ID: id, Name: req.Name, User: cfg.User, Group: cfg.Group,
		Datastore: src.Datastore, Type: src.Type, DevPrefix: src.DevPrefix,
		State: schemas.ImageStateLocked, Description: desc, Attributes: attrs,
		Origin: src.Source, SagaID: sagaID, CreatedAt: t, UpdatedAt: t,
	}
}

// announce publishes a new record: image-created (the answer a client
// waits for) and its first state.
func (s *Service) announce(ctx context.Context, m *bus.Msg, img *schemas.Image) error {
	if err := s.emitImage(ctx, EvtImageCreated, img, causedBy(m.Envelope, EvtImageCreated)); err != nil {
		return err
	}
	return s.emitState(ctx, img.ID, "", StateLocked, "", causedBy(m.Envelope, EvtStateChanged))
}

func (s *Service) startLuksSaga(ctx context.Context, id, kind string, d luksData) error {
	sg := &saga.Saga{
		ID:       id,
		Kind:     kind,
		Subject:  idToken(d.ImageID),
		Phase:    PhaseEncrypt,
		Deadline: time.Now().UTC().Add(s.cfg.EncryptDeadline),
		Owned:    []string{d.Dest},
	}
	if err := sg.SetData(d); err != nil {
		return err
	}
	return s.createSaga(ctx, sg)
}

// sendLuks asks crypto-luks to encrypt the source (encrypt) or to make an
// empty volume (luks-create). Its ID is the saga step's, so a resend is a
// duplicate JetStream drops.
func (s *Service) sendLuks(ctx context.Context, m *bus.Msg, sagaID string, d luksData) error {
	opts := []bus.PubOption{bus.CausedBy(m.Envelope), bus.WithStep(sagaID, string(PhaseEncrypt)), bus.WithSubject(idToken(d.ImageID))}
	var err error
	if d.SizeMiB > 0 {
		_, err = s.bus.Command(ctx, cryptoService, "create",
			schemas.CryptoLuksCreate{ImageID: d.ImageID, SizeMiB: d.SizeMiB, Dest: d.Dest}, opts...)
	} else {
		_, err = s.bus.Command(ctx, cryptoService, "encrypt",
			schemas.CryptoLuksEncrypt{ImageID: d.ImageID, Source: d.Source, SourceFormat: d.SourceFormat, Dest: d.Dest}, opts...)
	}
	if err != nil {
		return fmt.Errorf("image %d: ask %s: %w", d.ImageID, cryptoService, err)
	}
	return nil
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

// handleLuksEvent drives the LUKS sagas from crypto-luks's reports.
func (s *Service) handleLuksEvent(ctx context.Context, m *bus.Msg) error {
	if m.Name != "encrypted" && m.Name != "failed" && m.Name != "slots-changed" {
		return nil
	}
	if err := schemas.Validate(schemas.KindEvent, cryptoService, m.Name, m.Data); err != nil {
		s.log.Error("ignoring an invalid crypto-luks event", "subject", m.Subject, "err", err)
		return bus.Terminal(err)
	}
	if m.Name == "slots-changed" {
		var ev schemas.CryptoLuksSlotsChanged
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.slotsChanged(ctx, m, ev)
	}
	if m.Name == "encrypted" {
		var ev schemas.CryptoLuksEncrypted
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.encrypted(ctx, m, ev)
	}
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	return s.luksFailed(ctx, m, ev)
}

// findLuksSaga is findSaga restricted to LUKS sagas.
func (s *Service) findLuksSaga(ctx context.Context, m *bus.Msg, imageID int64) (*saga.Saga, luksData, error) {
	var d luksData
	sg, err := s.findSaga(ctx, m.Envelope.CorrelationID, imageID)
	if err != nil {
		return nil, d, err
	}
	if !isLuksKind(sg.Kind) {
		return nil, d, saga.ErrNotFound
	}
	return sg, d, sg.Decode(&d)
}

// encrypted records crypto-luks's report and commits the image.
func (s *Service) encrypted(ctx context.Context, m *bus.Msg, ev schemas.CryptoLuksEncrypted) error {
	sg, d, err := s.findLuksSaga(ctx, m, ev.ImageID)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return s.orphanLuks(ctx, ev)
	case err != nil:
		return err
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
		sg, err = s.sagas.Advance(ctx, sg.ID, PhaseEncrypt, PhaseCommit, s.cfg.CommitDeadline, "encrypted")
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
	return s.sagas.Update(ctx, id, func(sg *saga.Saga) error {
		if sg.Status != saga.StatusRunning || sg.Phase != PhaseEncrypt {
			return saga.ErrNoChange
		}
		var d luksData
		if err := sg.Decode(&d); err != nil {
			return err
		}
		d.Secret = ev.Secret
		d.Result = &schemas.ConverterConverted{ImageID: ev.ImageID, Dest: ev.Dest, Format: schemas.DiskFormatLUKS,
			VirtualSize: ev.VirtualSize, Size: ev.Size, SHA256: ev.SHA256}
		if d.SetAttributes == nil {
			d.SetAttributes = map[string]string{}
		}
		d.SetAttributes[AttrLUKSSecret] = ev.Secret
		return sg.SetData(d)
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
func (s *Service) luksFailed(ctx context.Context, m *bus.Msg, ev schemas.Failure) error {
	id, ok := failedImageID(m, ev)
	if !ok {
		return nil
	}
	sg, d, err := s.findLuksSaga(ctx, m, id)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return nil
	case err != nil:
		return err
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

// failedImageID is the image a crypto-luks failure is about: its image_id,
// else the subject's ID token.
func failedImageID(m *bus.Msg, ev schemas.Failure) (int64, bool) {
	if ev.ImageID != nil {
		return *ev.ImageID, true
	}
	if strings.HasPrefix(m.ID, "cmd-") {
		return 0, false
	}
	n, err := strconv.ParseInt(m.ID, 10, 64)
	return n, err == nil && n >= 0
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

// slotsChanged records the digest and size of a LUKS blob crypto-luks
// rewrote to change its key slots, so the record keeps describing the
// blob (launchers check what they fetch against it). A report about
// another blob or secret than the image's is ignored with a log line.
func (s *Service) slotsChanged(ctx context.Context, m *bus.Msg, ev schemas.CryptoLuksSlotsChanged) error {
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
	return s.emitImage(ctx, EvtImageUpdated, img, []bus.PubOption{bus.CausedBy(m.Envelope)})
}
