package catalog

import (
	"context"
	"strconv"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

func idToken(id int64) string { return strconv.FormatInt(id, 10) }

// causedBy links an event to the message that caused it and gives it an ID
// derived from that message and what the event says, so re-publishing it
// after a crash or redelivery is dropped by JetStream as a duplicate.
func causedBy(parent envelope.Envelope, what string) []bus.PubOption {
	return []bus.PubOption{bus.CausedBy(parent), bus.WithID(envelope.StepID(parent.ID, what))}
}

// inSaga is causedBy for events with no message behind them (reconciler).
func inSaga(sagaID, what string) []bus.PubOption {
	return []bus.PubOption{bus.WithCorrelation(sagaID), bus.WithID(envelope.StepID(sagaID, what))}
}

func (s *Service) emitState(ctx context.Context, id int64, from, to State, reason string, opts []bus.PubOption) error {
	ev := schemas.StateChanged{ID: id, From: schemas.ImageState(from), To: schemas.ImageState(to)}
	if to == StateError {
		ev.Error = schemas.ErrorText(reason)
	}
	_, err := s.bus.Event(ctx, schemas.EventCatalogStateChanged, idToken(id), ev, opts...)
	return err
}

func (s *Service) emitImage(ctx context.Context, event string, img *schemas.Image, opts []bus.PubOption) error {
	_, err := s.bus.Event(ctx, event, idToken(img.ID), img, opts...)
	return err
}

// emitFailed publishes a failed event about image id (nil when none
// exists) with its code from the catalogue (schemas/errors.json).
func (s *Service) emitFailed(ctx context.Context, subjectID string, id *int64, command, code, reason string, opts []bus.PubOption) error {
	c, _ := schemas.LookupErrorCode(code)
	ev := schemas.Failure{Code: code, ImageID: id, Command: command, Error: schemas.ErrorText(reason), Retryable: c.Retryable}
	_, err := s.bus.Event(ctx, schemas.EventCatalogFailed, subjectID, ev, opts...)
	return err
}
