package catalog

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The import workflow: convert (the converter fetches, inspects, converts
// and stores the data) → commit (the catalog checks the blob and makes the
// image READY).
const (
	KindImport    = "import"
	PhaseConvert  = saga.Phase("convert")
	PhaseCommit   = saga.Phase("commit")
	stepCommitted = "committed"
)

// importData is the import saga's own state.
type importData struct {
	ImageID   int64  `json:"image_id"`
	CommandID string `json:"command_id"`
	// Command is the subject of the command that started the import.
	Command string `json:"command"`
	// Dest is where the converter was asked to store the blob.
	Dest string `json:"dest"`
	// Staged is the upload to delete once the import is over.
	Staged string `json:"staged,omitempty"`
	// Result is the converter's report, kept for a commit resumed after a
	// crash.
	Result *schemas.ConverterConverted `json:"result,omitempty"`
	// SetAttributes are merged into the image's attributes at commit
	// (provenance of a docker import).
	SetAttributes map[string]string `json:"set_attributes,omitempty"`
}

func (s *Service) importDefinition() saga.Definition {
	return saga.Definition{Kind: KindImport, Phases: map[saga.Phase]saga.PhaseSpec{
		PhaseConvert: {Deadline: s.cfg.ConvertDeadline, Compensate: s.compensateImport},
		PhaseCommit:  {Deadline: s.cfg.CommitDeadline},
	}}
}

// compensateImport deletes what a failed import wrote (or may still be
// writing: a late blob is deleted when its converted event arrives) and
// the staged upload it consumed.
func (s *Service) compensateImport(ctx context.Context, sg *saga.Saga) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	urls := append([]string{}, sg.Owned...)
	urls = append(urls, d.Dest)
	if d.Staged != "" {
		urls = append(urls, d.Staged)
	}
	var errs []error
	for _, u := range urls {
		if err := s.deleteURL(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (s *Service) deleteURL(ctx context.Context, u string) error {
	if u == "" {
		return nil
	}
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		return nil // nothing we could have written
	}
	if err := s.blobs.Delete(ctx, bucket, key); err != nil && !blob.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", u, err)
	}
	return nil
}

// handleConverterEvent drives import sagas from the converter's reports.
// Duplicates and reports about finished sagas are acknowledged and
// otherwise ignored (except that a late blob is deleted).
func (s *Service) handleConverterEvent(ctx context.Context, m *bus.Msg) error {
	if m.Name != "converted" && m.Name != "failed" {
		return nil
	}
	if err := schemas.Validate(schemas.KindEvent, "converter", m.Name, m.Data); err != nil {
		s.log.Error("ignoring an invalid converter event", "subject", m.Subject, "err", err)
		return bus.Terminal(err)
	}
	if m.Name == "converted" {
		var ev schemas.ConverterConverted
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return s.converted(ctx, m, ev)
	}
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	return s.convertFailed(ctx, m, ev)
}

// findSaga finds the import saga of an image: by the event's correlation
// (the saga ID), else through the image record.
func (s *Service) findSaga(ctx context.Context, correlation string, imageID int64) (*saga.Saga, error) {
	if correlation != "" {
		sg, err := s.sagas.Get(ctx, correlation)
		if err == nil && isImportKind(sg.Kind) && sg.Subject == idToken(imageID) {
			return sg, nil
		}
		if err != nil && !errors.Is(err, saga.ErrNotFound) {
			return nil, err
		}
	}
	img, _, err := s.images.Get(ctx, imageID)
	if errors.Is(err, ErrNotFound) || (err == nil && img.SagaID == "") {
		return nil, saga.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	sg, err := s.sagas.Get(ctx, img.SagaID)
	if err != nil {
		return nil, err
	}
	return sg, nil
}

func (s *Service) converted(ctx context.Context, m *bus.Msg, ev schemas.ConverterConverted) error {
	sg, err := s.findSaga(ctx, m.Envelope.CorrelationID, ev.ImageID)
	if errors.Is(err, saga.ErrNotFound) {
		return s.orphan(ctx, ev)
	}
	if err != nil {
		return err
	}
	switch {
	case sg.Status == saga.StatusSucceeded:
		return nil // a duplicate
	case sg.Status != saga.StatusRunning:
		// The import failed or timed out while the converter worked: its
		// blob arrived after compensation and has no owner.
		s.log.Info("deleting a blob that arrived after its import failed", "image", ev.ImageID, "dest", ev.Dest)
		return s.deleteAttempt(ctx, ev, sg.ID)
	case sg.Phase == PhaseConvert:
		var d importData
		if err := sg.Decode(&d); err != nil {
			return err
		}
		if reason := s.checkDest(d, ev); reason != "" {
			_ = s.deleteAttempt(ctx, ev, sg.ID)
			return s.failImport(ctx, sg, reason, &m.Envelope)
		}
		if sg, err = s.recordResult(ctx, sg.ID, ev); err != nil {
			return err
		}
		sg, err = s.sagas.Advance(ctx, sg.ID, PhaseConvert, PhaseCommit, s.cfg.CommitDeadline, "converted")
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

// checkDest makes sure the converter wrote the key this attempt derived.
func (s *Service) checkDest(d importData, ev schemas.ConverterConverted) string {
	if ev.Dest == d.Dest {
		return ""
	}
	return fmt.Sprintf("the converter stored the disk at %s instead of %s", ev.Dest, d.Dest)
}

// deleteOwned deletes a reported blob if it lies where image blobs live,
// unless the image records it as its blob.
func (s *Service) deleteOwned(ctx context.Context, ev schemas.ConverterConverted) error {
	bucket, key, err := blob.ParseURL(ev.Dest)
	if err != nil || !strings.HasPrefix(key, imagePrefix(ev.ImageID)) || !s.isDatastoreBucket(bucket) {
		return nil
	}
	if img, _, err := s.images.Get(ctx, ev.ImageID); err == nil && img.Source == ev.Dest {
		return nil
	} else if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	return s.deleteURL(ctx, ev.Dest)
}

// deleteAttempt deletes a reported blob only if it lies under the key
// prefix of saga sagaID's attempt (images/<id>/<saga>/): a report about a
// saga never makes the catalog delete what another attempt wrote.
func (s *Service) deleteAttempt(ctx context.Context, ev schemas.ConverterConverted, sagaID string) error {
	_, key, err := blob.ParseURL(ev.Dest)
	if err != nil || !strings.HasPrefix(key, blob.AttemptPrefix(ev.ImageID, sagaID)) {
		s.log.Warn("not deleting a reported blob outside its attempt's keys", "image", ev.ImageID, "saga", sagaID, "dest", ev.Dest)
		return nil
	}
	return s.deleteOwned(ctx, ev)
}

// orphan handles a converted report no saga claims: if its image is gone,
// the blob has no owner and is deleted.
func (s *Service) orphan(ctx context.Context, ev schemas.ConverterConverted) error {
	img, _, err := s.images.Get(ctx, ev.ImageID)
	if err == nil && img.Source == ev.Dest {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	s.log.Warn("converter reported a blob for no running import; deleting it", "image", ev.ImageID, "dest", ev.Dest)
	return s.deleteOwned(ctx, ev)
}

func (s *Service) isDatastoreBucket(bucket string) bool {
	for _, ds := range s.cfg.Datastores {
		if ds.Bucket == bucket {
			return true
		}
	}
	return false
}

// recordResult stores the converter's report in the saga while it is
// still converting, so a commit can resume from it after a crash.
func (s *Service) recordResult(ctx context.Context, id string, ev schemas.ConverterConverted) (*saga.Saga, error) {
	return s.sagas.Update(ctx, id, func(sg *saga.Saga) error {
		if sg.Status != saga.StatusRunning || sg.Phase != PhaseConvert {
			return saga.ErrNoChange
		}
		var d importData
		if err := sg.Decode(&d); err != nil {
			return err
		}
		d.Result = &ev
		if d.Dest != ev.Dest {
			sg.Owned = append(sg.Owned, ev.Dest)
		}
		return mergeData(sg, d) // keeps the fields of a docker import
	})
}

// commit checks the stored blob against the converter's report and makes
// the image READY. It is idempotent, so a redelivered report or the
// reconciler can run it again after a crash.
func (s *Service) commit(ctx context.Context, sg *saga.Saga, cause *envelope.Envelope) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	if d.Result == nil {
		return s.failImport(ctx, sg, "import reached commit without the converter's report", cause)
	}
	if reason, err := s.verifyBlob(ctx, reporter(sg.Kind), *d.Result); err != nil {
		return err
	} else if reason != "" {
		return s.failImport(ctx, sg, reason, cause)
	}
	res := d.Result
	img, _, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		if img.SagaID != sg.ID {
			return fmt.Errorf("image %d belongs to saga %s now: %w", img.ID, img.SagaID, errLost)
		}
		if State(img.State) == StateReady && img.Source == res.Dest {
			return errNoChange
		}
		if State(img.State) != StateLocked {
			return fmt.Errorf("image %d is %s: %w", img.ID, img.State, errLost)
		}
		img.State = schemas.ImageStateReady
		img.Error = ""
		img.Format = res.Format
		img.Size = res.VirtualSize
		img.StoredSize = res.Size
		img.SHA256 = res.SHA256
		img.Source = res.Dest
		if len(d.SetAttributes) > 0 {
			if img.Attributes == nil {
				img.Attributes = map[string]string{}
			}
			maps.Copy(img.Attributes, d.SetAttributes)
		}
		return nil
	})
	switch {
	case errors.Is(err, errLost), errors.Is(err, ErrNotFound):
		// The image went to ERROR (deadline) or away while we checked:
		// this import has nobody to deliver to.
		return s.failImport(ctx, sg, fmt.Sprintf("import finished too late: %v", err), cause)
	case err != nil:
		return err
	}
	opts := func(what string) []bus.PubOption {
		if cause != nil {
			return causedBy(*cause, what)
		}
		return inSaga(sg.ID, what)
	}
	if err := s.emitState(ctx, img.ID, StateLocked, StateReady, "", opts(stepCommitted+"/"+EvtStateChanged)); err != nil {
		return err
	}
	if err := s.emitImage(ctx, EvtImageUpdated, img, opts(stepCommitted+"/"+EvtImageUpdated)); err != nil {
		return err
	}
	if err := s.deleteURL(ctx, d.Staged); err != nil {
		return err
	}
	_, err = s.sagas.Succeed(ctx, sg.ID, "image READY")
	return err
}

var errLost = errors.New("the import no longer owns the image")

// reporter names who reports the blob a workflow commits.
func reporter(kind string) string {
	if isLuksKind(kind) {
		return cryptoService
	}
	return "the converter"
}

// workName names a workflow in messages.
func workName(kind string) string {
	switch kind {
	case KindEncrypt:
		return "the encryption"
	case KindLuksCreate:
		return "the LUKS volume"
	}
	return "import"
}

// verifyBlob returns why the stored blob does not match the converter's
// report ("" when it does); err is for failures worth retrying.
func (s *Service) verifyBlob(ctx context.Context, who string, res schemas.ConverterConverted) (reason string, err error) {
	bucket, key, err := blob.ParseURL(res.Dest)
	if err != nil {
		return fmt.Sprintf("%s reported an invalid destination: %v", who, err), nil
	}
	info, err := s.blobs.Stat(ctx, bucket, key)
	if blob.IsNotFound(err) {
		return fmt.Sprintf("%s reported %s, but the store has no such object", who, res.Dest), nil
	}
	if err != nil {
		return "", err
	}
	if info.Size != res.Size {
		return fmt.Sprintf("%s reported %d bytes at %s, but the store holds %d", who, res.Size, res.Dest, info.Size), nil
	}
	if !s.cfg.VerifyDigest {
		return "", nil
	}
	sum, _, err := s.blobs.SHA256(ctx, bucket, key)
	if blob.IsNotFound(err) {
		return fmt.Sprintf("%s vanished while its digest was checked", res.Dest), nil
	}
	if err != nil {
		return "", err
	}
	if sum != res.SHA256 {
		return fmt.Sprintf("%s has SHA-256 %s, but %s reported %s", res.Dest, sum, who, res.SHA256), nil
	}
	return "", nil
}

func (s *Service) convertFailed(ctx context.Context, m *bus.Msg, ev schemas.Failure) error {
	if ev.ImageID == nil {
		return nil // a command naming no image: no import waits for it
	}
	sg, err := s.findSaga(ctx, m.Envelope.CorrelationID, *ev.ImageID)
	if errors.Is(err, saga.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if sg.Status.Finished() {
		return nil
	}
	reason := fmt.Sprintf("%s: %s", ev.Phase, ev.Error)
	if ev.Retryable {
		reason += " (this may be temporary: delete the image and import it again)"
	}
	return s.failImportCode(ctx, sg, ev.Code, reason, &m.Envelope)
}

// failImport ends an import in ERROR: the image goes to ERROR with reason,
// a failed event says why, and the saga is failed and compensated. If the
// image is READY from this saga already (the commit won a race, or crashed
// before finishing), the commit is finished instead.
func (s *Service) failImportCode(ctx context.Context, sg *saga.Saga, code, reason string, cause *envelope.Envelope) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	committed := false
	img, changed, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		switch {
		case img.SagaID != sg.ID || State(img.State) == StateError:
			return errNoChange
		case State(img.State) != StateLocked:
			committed = true
			return errNoChange
		}
		img.State = schemas.ImageStateError
		img.Error = schemas.ErrorText(reason)
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if committed {
		if sg.Phase == PhaseCommit && sg.Status == saga.StatusRunning {
			return s.commit(ctx, sg, cause)
		}
		return nil
	}
	opts := func(what string) []bus.PubOption {
		if cause != nil {
			return causedBy(*cause, what)
		}
		return inSaga(sg.ID, what)
	}
	if img != nil && (changed || State(img.State) == StateError) {
		id := img.ID
		if err := s.emitState(ctx, id, StateLocked, StateError, img.Error, opts("import-failed/"+EvtStateChanged)); err != nil {
			return err
		}
		if err := s.emitFailed(ctx, idToken(id), &id, d.Command, code, img.Error, opts("import-failed/"+EvtFailed)); err != nil {
			return err
		}
	}
	if _, err := s.sagas.Fail(ctx, sg.ID, reason); err != nil && !errors.Is(err, saga.ErrNotRunning) {
		return err
	}
	if err := s.engine.Compensate(ctx, sg.ID); err != nil && !errors.Is(err, saga.ErrBusy) {
		return err
	}
	return nil
}

// expired is the reconciler's hook for an import past its phase deadline.
func (s *Service) expired(ctx context.Context, sg *saga.Saga) error {
	if !isImportKind(sg.Kind) {
		_, err := s.sagas.Expire(ctx, sg.ID)
		return err
	}
	d := roundDuration(sg.PhaseDuration())
	reason := fmt.Sprintf("import did not finish within %s", d)
	switch sg.Phase {
	case PhaseCommit:
		reason = fmt.Sprintf("%s could not be committed within %s", workName(sg.Kind), d)
	case PhaseResolve, PhaseBuild:
		reason = dockerExpired(sg, d)
	case PhaseEncrypt:
		reason = luksExpired(sg, d)
	}
	return s.failImportCode(ctx, sg, schemas.CodeDeadlineExceeded, reason, nil)
}

// resume finishes a commit a crashed process left half done.
func (s *Service) resume(ctx context.Context, sg *saga.Saga) error {
	if !isImportKind(sg.Kind) || sg.Phase != PhaseCommit {
		return nil
	}
	return s.commit(ctx, sg, nil)
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}
