package bus

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

const tracerName = "github.com/slipway/slipway/pkg/bus"

func tracer() trace.Tracer { return otel.Tracer(tracerName) }

// PubOption adjusts the envelope of an outgoing message.
type PubOption func(*envelope.Envelope)

// WithID sets ce-id (and so Nats-Msg-Id).
func WithID(id string) PubOption { return func(e *envelope.Envelope) { e.ID = id } }

// WithStep makes the message a saga step: its ID is deterministic, so a
// retried step is dropped as a duplicate, and it belongs to the saga.
func WithStep(sagaID, step string) PubOption {
	return func(e *envelope.Envelope) {
		e.ID = envelope.StepID(sagaID, step)
		e.CorrelationID = sagaID
	}
}

// WithCorrelation sets ce-correlationid.
func WithCorrelation(id string) PubOption {
	return func(e *envelope.Envelope) { e.CorrelationID = id }
}

// CausedBy links the message to the one that caused it.
func CausedBy(parent envelope.Envelope) PubOption {
	return func(e *envelope.Envelope) {
		e.CorrelationID = parent.CorrelationID
		e.CausationID = parent.ID
	}
}

// WithSubject sets ce-subject.
func WithSubject(ceSubject string) PubOption {
	return func(e *envelope.Envelope) { e.Subject = ceSubject }
}

// Command publishes a command to service's verb and returns the envelope
// sent. A command without a schema (cmd/<service>.<verb>.json) is refused,
// matching schemas.ErrUnknownMessage. A command outside any saga starts one: its correlation is its ID.
func (b *Bus) Command(ctx context.Context, service, verb string, data any, opts ...PubOption) (envelope.Envelope, error) {
	if err := described(schemas.KindCommand, service, verb); err != nil {
		return envelope.Envelope{}, err
	}
	env := envelope.Envelope{
		Type:       envelope.Type(service, verb),
		DataSchema: envelope.DataSchema("cmd", service, verb),
	}
	for _, o := range opts {
		o(&env)
	}
	if env.ID == "" {
		env.ID = envelope.NewID()
	}
	if env.CorrelationID == "" {
		env.CorrelationID = env.ID
	}
	return b.publish(ctx, b.CommandSubject(service, verb), env, data)
}

// Event publishes an event of this service about id (ce-subject = id). An
// event without a schema (evt/<service>.<event>.json) is refused, matching
// schemas.ErrUnknownMessage.
func (b *Bus) Event(ctx context.Context, event, id string, data any, opts ...PubOption) (envelope.Envelope, error) {
	if err := described(schemas.KindEvent, b.Service(), event); err != nil {
		return envelope.Envelope{}, err
	}
	env := envelope.Envelope{
		Type:       envelope.Type(b.Service(), event),
		DataSchema: envelope.DataSchema("evt", b.Service(), event),
		Subject:    id,
	}
	for _, o := range opts {
		o(&env)
	}
	if env.ID == "" {
		env.ID = envelope.NewID()
	}
	return b.publish(ctx, b.EventSubject(b.Service(), event, id), env, data)
}

func (b *Bus) publish(ctx context.Context, subject string, env envelope.Envelope, data any) (envelope.Envelope, error) {
	body, err := encode(data)
	if err != nil {
		return env, fmt.Errorf("bus: publish %s: encode payload: %w", subject, err)
	}
	env.Source = envelope.Source(b.Service())
	env.DataContentType = envelope.ContentTypeJSON
	if env.Time.IsZero() {
		env.Time = time.Now().UTC()
	}
	ctx, span := tracer().Start(ctx, b.spanSubject(subject)+" publish",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(messagingAttrs(subject, env)...),
		trace.WithAttributes(attribute.String("slipway.service", b.Service())))
	defer span.End()
	env.InjectTrace(ctx)

	msg := &nats.Msg{Subject: subject, Header: env.Header(), Data: body}
	if _, err := b.js.PublishMsg(ctx, msg); err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return env, fmt.Errorf("bus: publish %s (ce-id %s): %w", subject, env.ID, err)
	}
	return env, nil
}

// spanSubject is what a span is named after: a command's subject without
// its sender token, so that span names stay few (one per command, not one
// per user); the full subject is the messaging.destination.name attribute.
func (b *Bus) spanSubject(subject string) string {
	if _, _, _, sender := b.parseSubject(subject); sender != "" {
		return strings.TrimSuffix(subject, "."+sender)
	}
	return subject
}

func messagingAttrs(subject string, env envelope.Envelope) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("messaging.system", "nats"),
		attribute.String("messaging.destination.name", subject),
		attribute.String("messaging.message.id", env.ID),
		attribute.String("messaging.message.conversation_id", env.CorrelationID),
		attribute.String("cloudevents.event_type", env.Type),
	}
}

// encode sends bytes as they are and marshals anything else to JSON.
func encode(data any) ([]byte, error) {
	switch v := data.(type) {
	case []byte:
		return v, nil
	case json.RawMessage:
		return v, nil
	case nil:
		return nil, nil
	default:
		return json.Marshal(v)
	}
}
