// Package envelope carries Slipway's CloudEvents 1.0 attributes in NATS
// headers (binary content mode): the body of a message is its JSON payload,
// and every attribute travels as a "ce-" header. See docs/design.md.
package envelope

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/propagation"
)

// Header names of the binary-mode CloudEvents attributes and the extensions
// Slipway uses.
const (
	HeaderSpecVersion     = "ce-specversion"
	HeaderID              = "ce-id"
	HeaderType            = "ce-type"
	HeaderSource          = "ce-source"
	HeaderSubject         = "ce-subject"
	HeaderTime            = "ce-time"
	HeaderDataSchema      = "ce-dataschema"
	HeaderDataContentType = "ce-datacontenttype"
	HeaderCorrelationID   = "ce-correlationid"
	HeaderCausationID     = "ce-causationid"
	HeaderTraceParent     = "traceparent"
	HeaderTraceState      = "tracestate"
	// HeaderMsgID is JetStream's de-duplication header; it always equals ce-id.
	HeaderMsgID = nats.MsgIdHdr
)

// SpecVersion is the only CloudEvents version Slipway speaks.
const SpecVersion = "1.0"

// ContentTypeJSON is the content type of every Slipway payload.
const ContentTypeJSON = "application/json"

// ErrNoEnvelope reports a message that carries no ce- header at all, such as
// one sent with a plain `nats pub`. Receivers synthesize an envelope for it.
var ErrNoEnvelope = errors.New("message has no CloudEvents headers")

// Envelope is the set of CloudEvents attributes of one message.
type Envelope struct {
	ID              string
	Type            string
	Source          string
	Subject         string
	DataSchema      string
	DataContentType string
	Time            time.Time
	CorrelationID   string
	CausationID     string
	TraceParent     string
	TraceState      string
}

// NewID returns a random UUID.
func NewID() string { return uuid.NewString() }

// StepID is the deterministic ID of a saga step: retrying the step
// publishes the same ID, so JetStream drops the duplicate.
func StepID(sagaID, step string) string {
	sum := sha256.Sum256([]byte(sagaID + "/" + step))
	return hex.EncodeToString(sum[:16])
}

// Type returns the ce-type of a command verb or an event of service.
func Type(service, name string) string {
	return "io.slipway." + service + "." + name + ".v1"
}

// DataSchema returns the schema $id of a command ("cmd") or event ("evt").
func DataSchema(kind, service, name string) string {
	return "https://slipway.dev/schemas/" + kind + "/" + service + "." + name + ".json"
}

// Source returns the ce-source of a service.
func Source(service string) string { return "/slipway/" + service }

// Header renders the envelope as NATS headers, including Nats-Msg-Id.
func (e Envelope) Header() nats.Header {
	h := nats.Header{}
	e.SetHeader(h)
	return h
}

// SetHeader writes the envelope into h, leaving other headers alone.
func (e Envelope) SetHeader(h nats.Header) {
	h.Set(HeaderSpecVersion, SpecVersion)
	set := func(k, v string) {
		if v != "" {
			h.Set(k, v)
		}
	}
	set(HeaderID, e.ID)
	set(HeaderMsgID, e.ID)
	set(HeaderType, e.Type)
	set(HeaderSource, e.Source)
	set(HeaderSubject, e.Subject)
	if !e.Time.IsZero() {
		h.Set(HeaderTime, e.Time.UTC().Format(time.RFC3339Nano))
	}
	set(HeaderDataSchema, e.DataSchema)
	set(HeaderDataContentType, e.DataContentType)
	set(HeaderCorrelationID, e.CorrelationID)
	set(HeaderCausationID, e.CausationID)
	set(HeaderTraceParent, e.TraceParent)
	set(HeaderTraceState, e.TraceState)
}

// FromHeader reads an envelope from NATS headers. Header names are matched
// without regard to case because some clients capitalise them. A message
// with no ce- header returns ErrNoEnvelope; one with an incomplete set
// returns an error naming the missing attribute.
func FromHeader(h nats.Header) (Envelope, error) {
	lower := make(map[string]string, len(h))
	hasCE := false
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		if _, seen := lower[lk]; !seen {
			lower[lk] = v[0]
		}
		if strings.HasPrefix(lk, "ce-") {
			hasCE = true
		}
	}
	if !hasCE {
		return Envelope{}, ErrNoEnvelope
	}
	for _, req := range []string{HeaderSpecVersion, HeaderID, HeaderType, HeaderSource} {
		if lower[req] == "" {
			return Envelope{}, fmt.Errorf("envelope: required attribute %s is missing", req)
		}
	}
	if v := lower[HeaderSpecVersion]; v != SpecVersion {
		return Envelope{}, fmt.Errorf("envelope: %s %q is not supported (want %q)", HeaderSpecVersion, v, SpecVersion)
	}
	e := Envelope{
		ID:              lower[HeaderID],
		Type:            lower[HeaderType],
		Source:          lower[HeaderSource],
		Subject:         lower[HeaderSubject],
		DataSchema:      lower[HeaderDataSchema],
		DataContentType: lower[HeaderDataContentType],
		CorrelationID:   lower[HeaderCorrelationID],
		CausationID:     lower[HeaderCausationID],
		TraceParent:     lower[HeaderTraceParent],
		TraceState:      lower[HeaderTraceState],
	}
	if t := lower[HeaderTime]; t != "" {
		parsed, err := time.Parse(time.RFC3339Nano, t)
		if err != nil {
			return Envelope{}, fmt.Errorf("envelope: %s %q is not an RFC 3339 time: %w", HeaderTime, t, err)
		}
		e.Time = parsed.UTC()
	}
	return e, nil
}

// propagator always includes W3C trace context, so traces flow even when
// the process never configured a global propagator (otel's default is a
// no-op); a configured global one is honoured as well.
func propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, otel.GetTextMapPropagator())
}

// InjectTrace fills TraceParent and TraceState from the span in ctx.
func (e *Envelope) InjectTrace(ctx context.Context) {
	carrier := propagation.MapCarrier{}
	propagator().Inject(ctx, carrier)
	e.TraceParent = carrier.Get(HeaderTraceParent)
	e.TraceState = carrier.Get(HeaderTraceState)
}

// ExtractTrace returns ctx carrying the remote span context of the envelope.
func (e Envelope) ExtractTrace(ctx context.Context) context.Context {
	if e.TraceParent == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{HeaderTraceParent: e.TraceParent}
	if e.TraceState != "" {
		carrier[HeaderTraceState] = e.TraceState
	}
	return propagator().Extract(ctx, carrier)
}
