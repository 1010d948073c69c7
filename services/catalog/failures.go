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

// attemptOf tells a worker's failed attempt that will be tried again
// (next_attempt_at) from the end of a saga step: the router republishes
// it under the image as catalog.failed.<id>, so that a watcher of the
// image sees each attempt, its reason and when the next comes.
func attemptOf(m *bus.Msg) (schemas.Failure, bool) {
	var f schemas.Failure
	if m.Name != "failed" || m.Decode(&f) != nil {
		return f, false
	}
	return f, worker.IsAttempt(f)
}

// republishAttempt publishes a worker's failed attempt f about an image the
// catalog knows, once per attempt (its ID derives from the worker's
// event). The router validated it.
func (s *Service) republishAttempt(ctx context.Context, m *bus.Msg, f schemas.Failure) error {
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
	_, err := s.bus.Event(ctx, schemas.EventCatalogFailed, idToken(*f.ImageID), f, causedBy(m.Envelope, "attempt/"+schemas.EventCatalogFailed)...)
	return err
}
