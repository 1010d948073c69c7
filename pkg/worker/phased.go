package worker

import (
	"context"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// PhaseError is a job's failure in one of its phases, and whether
// retrying can help (see PhasedJobs).
type PhaseError[P ~string] struct {
	Phase    P
	Err      error
	Terminal bool
}

func (e *PhaseError[P]) Error() string { return e.Err.Error() }
func (e *PhaseError[P]) Unwrap() error { return e.Err }

// Expire is e for a job that ran past its deadline (expired, from
// bus.JobExpired): final, in the same phase.
func (e *PhaseError[P]) Expire(expired error) *PhaseError[P] {
	return &PhaseError[P]{Phase: e.Phase, Err: fmt.Errorf("%w: %w", expired, e.Err), Terminal: true}
}

// CleanupTimeout bounds cleaning up after a failed job, which runs even
// when the job's context is what ended it.
const CleanupTimeout = 30 * time.Second

// PhasedJobs settles and rejects the jobs of a worker whose jobs go
// through phases and each store one image's blob (the builder, the
// converter); the service says how its failures classify.
type PhasedJobs[P ~string] struct {
	Worker *Worker
	// Store is where the jobs store their blobs.
	Store *blob.Store
	// As is err as a *PhaseError[P], classifying an error that is not one.
	As func(err error) *PhaseError[P]
	// Code is the failure code of err for its failed event; an internal
	// error that is terminal is reported as refused.
	Code func(err error) string
	// Step is the saga step name of the failed event (FailedStep): its ID
	// derives from it, so a redelivered report is dropped as a duplicate.
	Step string
	// Upload is the phase that writes the blob: a failure in it removes
	// what it stored even when the job will be retried.
	Upload P
}

// Settle settles command m's job about image imageID (Worker.Settle): on
// success it publishes event with out, under an ID a redelivery (which
// redoes the job, same dest) publishes again; a failure is reported with
// its phase and code, and what it may have stored at dest is removed when
// the failure is final or happened while uploading.
func (p *PhasedJobs[P]) Settle(ctx context.Context, m *bus.Msg, imageID int64, dest, event string, out any, err error) error {
	var phase P
	if err != nil {
		phase = p.As(err).Phase
	}
	return p.Worker.Settle(ctx, m, err, Settlement{
		Succeeded: p.Worker.Answer(m, event, Token(imageID), out),
		Terminal:  func(err error) bool { return p.As(err).Terminal },
		Expired:   func(err, expired error) error { return p.As(err).Expire(expired) },
		Cleanup: func(_ error, final bool) {
			if final || phase == p.Upload {
				p.removeDest(dest, m.Envelope.ID)
			}
		},
		Failed: func(ctx context.Context, err error, f schemas.Failure) {
			p.publishFailed(ctx, m, &imageID, p.As(err), f)
		},
		Attrs: []any{"image_id", imageID, "phase", phase},
	})
}

// Reject answers a command that cannot be understood (err, terminal) as
// failed in phase, about the image it names, and ends it.
func (p *PhasedJobs[P]) Reject(ctx context.Context, m *bus.Msg, phase P, err error) error {
	var imageID *int64
	if id, ok := schemas.PeekImageID(m.Data); ok {
		imageID = &id
	}
	f := schemas.Failure{Error: schemas.ErrorText(err.Error()), Command: m.Subject}
	p.publishFailed(ctx, m, imageID, &PhaseError[P]{Phase: phase, Err: err, Terminal: true}, f)
	return bus.Terminal(err)
}

// publishFailed publishes f, the failed event of je (from Settle, or a
// rejection) with its phase and code, and logs a final failure (Settle
// logged an attempt that will be retried). The event is about image
// imageID, or, when imageID is nil, about the command (CommandToken): a
// command whose JSON is broken names no image, and guessing one would fail
// an unrelated image.
func (p *PhasedJobs[P]) publishFailed(ctx context.Context, m *bus.Msg, imageID *int64, je *PhaseError[P], f schemas.Failure) {
	f.ImageID, f.Phase, f.Code = imageID, string(je.Phase), p.Code(je)
	if f.Code == schemas.CodeInternal && je.Terminal {
		f.Code = schemas.CodeRefused
	}
	id := CommandToken(m)
	if imageID != nil {
		id = Token(*imageID)
	}
	w := p.Worker
	if _, perr := w.bus.Event(ctx, "failed", id, f,
		bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, FailedStep(p.Step, f))); perr != nil {
		w.log.Error("failed event not published", "command", m.Subject, "id", id, "err", perr)
	}
	switch {
	case IsAttempt(f): // Settle logged it
	case imageID == nil:
		w.log.Error("command rejected", "command", m.Subject, "seq", m.StreamSeq, "err", je.Err)
	default:
		w.log.Error("job failed", "image_id", *imageID, "phase", je.Phase, "code", f.Code, "retryable", f.Retryable, "err", je.Err)
	}
}

// removeDest deletes what command commandID's failed job may have stored
// at dest: only an object the command wrote (its metadata names the
// command), never one that was there before. It runs within
// CleanupTimeout of its own; a failure is only logged.
func (p *PhasedJobs[P]) removeDest(dest, commandID string) {
	ctx, cancel := context.WithTimeout(context.Background(), CleanupTimeout)
	defer cancel()
	if _, err := p.Store.DeleteIfOwned(ctx, dest, commandID); err != nil {
		p.Worker.log.Warn("partial destination not removed", "dest", dest, "err", err)
	}
}
