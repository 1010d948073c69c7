package cryptoluks

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// jobError is a failed command and whether retrying can help.
type jobError struct {
	err      error
	terminal bool
}

func (e *jobError) Error() string { return e.err.Error() }
func (e *jobError) Unwrap() error { return e.err }

// terminal marks err as one no retry can fix.
func terminal(err error) error { return &jobError{err: err, terminal: true} }

// transient marks err as one a retry may fix.
func transient(err error) error { return &jobError{err: err} }

// isTerminal decides whether retrying could help: an explicit mark wins;
// then cancellation and a full disk may pass; bad input, a wrong
// passphrase, an unknown secret and S3's final answers (4xx) do not.
func isTerminal(err error) bool {
	var je *jobError
	if errors.As(err, &je) {
		return je.terminal
	}
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return false
	case errors.Is(err, errInvalid), errors.Is(err, errNoSecret), errors.Is(err, errRefused),
		errors.Is(err, luks.ErrWrongPassphrase), errors.Is(err, luks.ErrFormat), errors.Is(err, luks.ErrNotLUKS),
		errors.Is(err, luks.ErrSlot), errors.Is(err, luks.ErrPath):
		return true
	}
	return blob.IsClientError(err)
}

// errRefused matches (errors.Is) a command refused for the state of things
// (the image is in use, not a LUKS image…).
var errRefused = errors.New("refused")

// refusal is such a refusal, in the words a person reads.
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == errRefused }

func refuse(format string, args ...any) error {
	return &refusal{msg: fmt.Sprintf(format, args...)}
}

// failureCode is the code of a failure for its failed event.
func failureCode(err error) string {
	switch {
	case errors.Is(err, errInvalid):
		return schemas.CodeInvalidCommand
	case errors.Is(err, errNoSecret), blob.IsNotFound(err):
		return schemas.CodeNotFound
	case errors.Is(err, errRefused):
		return schemas.CodeConflict
	case errors.Is(err, luks.ErrWrongPassphrase), errors.Is(err, luks.ErrFormat), errors.Is(err, luks.ErrNotLUKS),
		errors.Is(err, luks.ErrSlot), errors.Is(err, luks.ErrPath):
		return schemas.CodeInvalidInput
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return schemas.CodeUnavailable
	}
	code := bus.CodeOf(err)
	if code == schemas.CodeInternal && isTerminal(err) {
		return schemas.CodeRefused
	}
	return code
}

// decode validates a command against its schema and decodes it.
func decode(m *bus.Msg, v any) error {
	return worker.Decode(Name, m.Name, m, v)
}

// settle turns a handler's outcome into the message's fate
// (worker.Settle): nil acks; a terminal error, or any error on the last
// delivery, publishes a failed event about id (after cleanup, when given)
// and ends the message; any other error is retried.
func (s *Service) settle(ctx context.Context, m *bus.Msg, imageID *int64, err error, cleanup func()) error {
	return s.w.Settle(ctx, m, err, worker.Settlement{
		Terminal: isTerminal,
		Expired: func(err, expired error) error {
			return &jobError{err: fmt.Errorf("%w: %w", expired, err), terminal: true}
		},
		Cleanup: func(_ error, final bool) {
			if final && cleanup != nil {
				cleanup()
			}
		},
		Failed: func(ctx context.Context, err error, f schemas.Failure) { s.publishFailed(ctx, m, imageID, err, f) },
		Attrs:  []any{"image_id", imageID},
	})
}

// reject answers a command that cannot be understood.
func (s *Service) reject(ctx context.Context, m *bus.Msg, err error) error {
	var id *int64
	if imageID, ok := schemas.PeekImageID(m.Data); ok {
		id = &imageID
	}
	s.publishFailed(ctx, m, id, err, schemas.Failure{Command: m.Subject})
	return bus.Terminal(err)
}

// publishFailed sends f, completed, as failed.<image-id> (or
// failed.cmd-<seq> for a command naming no image), caused by the command;
// its ID derives from the command's (and the attempt's, for an attempt
// that will be retried), so a redelivery cannot publish it twice.
func (s *Service) publishFailed(ctx context.Context, m *bus.Msg, imageID *int64, err error, f schemas.Failure) {
	id := worker.CommandToken(m)
	if imageID != nil {
		id = idToken(*imageID)
	}
	f.ImageID, f.Code, f.Error, f.Retryable = imageID, failureCode(err), schemas.ErrorText(err.Error()), !isTerminal(err)
	if _, perr := s.bus.Event(context.WithoutCancel(ctx), "failed", id, f,
		bus.CausedBy(m.Envelope), bus.WithID(envelope.StepID(m.Envelope.ID, worker.FailedStep("failed", f)))); perr != nil {
		s.log.Error("failed event not published", "command", m.Subject, "err", perr)
	}
	if !worker.IsAttempt(f) {
		s.log.Error("command failed", "command", m.Subject, "id", id, "code", f.Code, "err", err)
	}
}

// publish sends a success event about id, caused by m, with an ID derived
// from m's, so a redelivery that publishes it again is dropped.
func (s *Service) publish(ctx context.Context, m *bus.Msg, event, id string, v any) error {
	_, err := s.bus.Event(ctx, event, id, v, bus.CausedBy(m.Envelope), bus.WithID(envelope.StepID(m.Envelope.ID, event)))
	if err != nil {
		return fmt.Errorf("publish %s: %w", event, err)
	}
	return nil
}
