package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The import workflow: convert (the converter fetches, inspects, converts
// and stores the data) → commit (the catalog checks the blob and makes the
// image READY).
const (
	KindImport   = "import"
	PhaseConvert = saga.Phase("convert")
)

// Events the import waits for.
var (
	evtConverted     = eventKey(schemas.ServiceConverter, "converted")
	evtConvertFailed = eventKey(schemas.ServiceConverter, "failed")
)

// importFlow declares the import.
func (s *Service) importFlow() *flow {
	return &flow{
		kind: KindImport, what: "import", reporter: "the converter", fail: s.failImportCode,
		phases: []phase{s.convertPhase(), s.commitPhase("import")},
		// A blob reported for no running import has no owner.
		unclaimed: map[string]eventHandler{evtConverted: unclaimedReport(s.orphanConverted)},
	}
}

// convertPhase declares the converter's work, shared with the docker
// import.
func (s *Service) convertPhase() phase {
	return phase{
		name:     PhaseConvert,
		commands: []string{"converter.import", "converter.create-blank"},
		on:       map[string]eventHandler{evtConverted: s.converted, evtConvertFailed: s.convertFailed},
		deadline: s.cfg.ConvertDeadline, compensate: s.compensateImport,
	}
}

// compensateImport deletes what a failed import wrote (or may still be
// writing: a late blob is deleted when its converted event arrives) and
// the staged upload it consumed (not an upload a refused create never
// handed over: dropUpload).
func (s *Service) compensateImport(ctx context.Context, sg *saga.Saga) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	urls := append([]string{}, sg.Owned...)
	urls = append(urls, d.Dest)
	errs := []error{s.dropUpload(ctx, d.ImageID, sg.ID, d.Staged)}
	for _, u := range urls {
		if err := s.deleteURL(ctx, u); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// converted advances an import from the converter's report and commits
// it. Duplicates and reports about finished sagas are acknowledged and
// otherwise ignored (except that a late blob is deleted).
func (s *Service) converted(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	var ev schemas.ConverterConverted
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
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
		sg, err := s.recordResult(ctx, sg.ID, ev)
		if err != nil {
			return err
		}
		sg, err = s.advance(ctx, sg, PhaseConvert, PhaseCommit, "converted")
		if errors.Is(err, saga.ErrWrongPhase) {
			return nil // a duplicate delivery advanced it first
		}
		if err != nil {
			return err
		}
		return s.commit(ctx, sg, &m.Envelope)
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

// orphanConverted handles a converted report no saga claims: if its
// image is gone, the blob has no owner and is deleted.
func (s *Service) orphanConverted(ctx context.Context, ev schemas.ConverterConverted) error {
	if kept, err := s.images.recordsBlob(ctx, ev.ImageID, ev.Dest); kept || err != nil {
		return err
	}
	s.log.Warn("converter reported a blob for no running import; deleting it", "image", ev.ImageID, "dest", ev.Dest)
	return s.deleteOwned(ctx, ev)
}

// recordResult stores the converter's report in the saga while it is
// still converting, so a commit can resume from it after a crash.
func (s *Service) recordResult(ctx context.Context, id string, ev schemas.ConverterConverted) (*saga.Saga, error) {
	// importData is the part of any import's data (a docker import's too)
	// that this step changes.
	return updateData(ctx, s.sagas, id, PhaseConvert, func(sg *saga.Saga, d *importData) {
		d.Result = &ev
		if d.Dest != ev.Dest {
			sg.Owned = append(sg.Owned, ev.Dest)
		}
	})
}

// convertFailed ends an import the converter could not do in ERROR.
func (s *Service) convertFailed(ctx context.Context, m *bus.Msg, sg *saga.Saga) error {
	var ev schemas.Failure
	if err := m.Decode(&ev); err != nil {
		return bus.Terminal(err)
	}
	if sg.Status.Finished() {
		return nil
	}
	reason := fmt.Sprintf("%s: %s", ev.Phase, ev.Error)
	if ev.Retryable {
		reason += " (this may be temporary: delete the image and import it again)"
	}
	var d importData
	if err := sg.Decode(&d); err == nil && d.SizeLimitedBy != "" {
		reason += fmt.Sprintf(" (the import was limited to a virtual size of %d MB by %s)", d.SizeLimit/mib, d.SizeLimitedBy)
	}
	return s.failImportCode(ctx, sg, ev.Code, reason, &m.Envelope)
}
