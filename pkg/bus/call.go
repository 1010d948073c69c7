package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// FailedEvents are the event names a service uses to refuse a command
// (payload schemas.Failure); Call turns them into a *CallError.
var FailedEvents = []string{"failed"}

// CallError is a refusal: the service answered the command with a failed
// event. Code is the event's code (schemas.Code…): callers match it, never
// Message, the event's "error" field.
type CallError struct {
	Service, Verb string
	Code          string
	Message       string
	Msg           *Msg
}

func (e *CallError) Error() string {
	return fmt.Sprintf("%s %s: %s (%s)", e.Service, e.Verb, e.Message, e.Code)
}

// FailureCode is the refusal's code, for CodeOf.
func (e *CallError) FailureCode() string { return e.Code }

// Call publishes a command and waits for service's answer: the first of its
// events named in accept, or a failed event, that was caused by the
// command (ce-causationid = the command's ce-id). It is for short
// synchronous exchanges between services (a lock, an ID); long work
// belongs in sagas driven by events. The wait ends with ctx.
//
// The subscription is made before the command is published, so an answer
// cannot be missed; events are seen by core subscribers as they are
// stored.
func (b *Bus) Call(ctx context.Context, service, verb string, data any, accept []string, opts ...PubOption) (*Msg, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultQueryTimeout)
		defer cancel()
	}
	ch := make(chan *nats.Msg, 64)
	sub, err := b.nc.ChanSubscribe(b.cfg.Prefix+".evt."+service+".>", ch)
	if err != nil {
		return nil, fmt.Errorf("bus: call %s %s: subscribe: %w", service, verb, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	env, err := b.Command(ctx, service, verb, data, opts...)
	if err != nil {
		return nil, err
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("bus: call %s %s: no answer: %w", service, verb, ctx.Err())
		case nm := <-ch:
			m, ok := b.answerTo(nm, env.ID, accept)
			if !ok {
				continue
			}
			if slices.Contains(FailedEvents, m.Name) {
				f := failureOf(m.Data)
				if f.NextAttemptAt != "" {
					continue // an attempt that failed; the service tries again
				}
				return m, &CallError{Service: service, Verb: verb, Code: f.Code, Message: f.Error, Msg: m}
			}
			return m, nil
		}
	}
}

// answerTo turns nm into a Msg when it is an accepted or failed event
// caused by the command cmdID.
func (b *Bus) answerTo(nm *nats.Msg, cmdID string, accept []string) (*Msg, bool) {
	ev, err := envelope.FromHeader(nm.Header)
	if err != nil || ev.CausationID != cmdID {
		return nil, false
	}
	m := &Msg{Envelope: ev, Subject: nm.Subject, Data: nm.Data, Header: nm.Header}
	m.Service, m.Name, m.ID, m.Sender = b.parseSubject(nm.Subject)
	if !slices.Contains(accept, m.Name) && !slices.Contains(FailedEvents, m.Name) {
		return nil, false
	}
	return m, true
}

// failureOf decodes a failed event; one that does not fit the shape keeps
// its raw text as the message, with the code internal.
func failureOf(data []byte) schemas.Failure {
	var f schemas.Failure
	if json.Unmarshal(data, &f) != nil || f.Error == "" {
		f = schemas.Failure{Error: string(data)}
	}
	if f.Code == "" {
		f.Code = schemas.CodeInternal
	}
	return f
}

// IsCallError reports whether err is a service's refusal.
func IsCallError(err error) bool {
	var ce *CallError
	return errors.As(err, &ce)
}
