package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
)

// Failures and their codes (schemas/errors.json): what the catalog tells a
// watcher of an image when a command is refused, when a worker's attempt
// for the image fails and will be tried again, and when a workflow fails.

// lockedCode gives a refusal of an image held by an operation in progress
// (LOCKED, LOCKED_USED, LOCKED_USED_PERS) the code image-locked, so that a
// caller waits for the operation to end by its code, not by its words.
func lockedCode(img *schemas.Image, err error) error {
	switch State(img.State) {
	case StateLocked, StateLockedUsed, StateLockedUsedPers:
		return bus.WithCode(schemas.CodeImageLocked, err)
	}
	return err
}

// withAttempts wraps the event handler: a worker's failed attempt that
// will be tried again (next_attempt_at) is not the end of a saga step; it
// is republished under the image as catalog.failed.<id>, so that a watcher
// of the image sees each attempt, its reason and when the next comes.
// Everything else goes on to next.
func (s *Service) withAttempts(next bus.Handler) bus.Handler {
	return func(ctx context.Context, m *bus.Msg) error {
		if m.Name != "failed" {
			return next(ctx, m)
		}
		var f schemas.Failure
		if err := m.Decode(&f); err != nil || !worker.IsAttempt(f) {
			return next(ctx, m) // the sagas validate and judge it
		}
		return s.republishAttempt(ctx, m, f)
	}
}

// republishAttempt publishes a worker's failed attempt f about an image the
// catalog knows, once per attempt (its ID derives from the worker's
// event).
func (s *Service) republishAttempt(ctx context.Context, m *bus.Msg, f schemas.Failure) error {
	if err := schemas.Validate(schemas.KindEvent, m.Service, m.Name, m.Data); err != nil {
		s.log.Error("ignoring an invalid failed event", "subject", m.Subject, "err", err)
		return bus.Terminal(err)
	}
	if f.ImageID == nil {
		return nil // about no image: nobody watches it here
	}
	if _, _, err := s.images.Get(ctx, *f.ImageID); errors.Is(err, ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	f.Error = schemas.ErrorText(fmt.Sprintf("%s: %s", m.Service, f.Error))
	s.log.Warn("a worker's attempt failed; it will try again", "image", *f.ImageID, "service", m.Service,
		"attempt", f.Attempt, "code", f.Code, "next_attempt_at", f.NextAttemptAt)
	_, err := s.bus.Event(ctx, EvtFailed, idToken(*f.ImageID), f, causedBy(m.Envelope, "attempt/"+EvtFailed)...)
	return err
}
