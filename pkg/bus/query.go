package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// QueryHandler answers one query; the result is sent back as JSON
// ([]byte and json.RawMessage as they are). req has already been checked
// against the endpoint's request schema (an empty body stands for {}); the
// result is checked against its reply schema before it is sent.
type QueryHandler func(ctx context.Context, req []byte) (any, error)

// DecodeQuery reads a query's optional JSON request strictly: an empty
// body leaves v as it is, an unknown field or bad JSON is Invalid.
func DecodeQuery(req []byte, v any) error {
	if len(bytes.TrimSpace(req)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(req))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Invalid(fmt.Errorf("bad request: %w", err))
	}
	return nil
}

// ByIDOrName answers a query that names one thing (what: "image") by its
// ID or by its name, one of the two: byID or byName finds it, and an error
// of theirs that matches missing (kvstore.ErrNotFound) becomes a NotFound
// that says which was asked for.
func ByIDOrName[T any](what string, id *int64, name string, byID func(int64) (T, error), byName func(string) (T, error), missing error) (T, error) {
	var (
		v   T
		err error
	)
	switch {
	case id != nil && name != "":
		return v, Invalid(errors.New("give id or name, not both"))
	case id != nil:
		if v, err = byID(*id); errors.Is(err, missing) {
			return v, NotFound(fmt.Errorf("%s %d does not exist", what, *id))
		}
	case name != "":
		if v, err = byName(name); errors.Is(err, missing) {
			return v, NotFound(fmt.Errorf("no %s is named %q", what, name))
		}
	default:
		return v, Invalid(fmt.Errorf("give the id or the name of the %s", what))
	}
	return v, err
}

// DefaultQueryTimeout bounds a Query whose ctx has no deadline.
const DefaultQueryTimeout = 10 * time.Second

// maxQueriesInFlight bounds the handlers one Serve runs at once; micro
// itself would run them one after the other per endpoint.
const maxQueriesInFlight = 64

var microName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// Serve registers a NATS micro service named after this service, with one
// endpoint per entry on "<prefix>.api.<service>.<endpoint>.<sender>"
// (whoever asks: the handler finds it with [QuerySender]). Stop the
// returned service to remove it.
//
// Every endpoint must have a request schema and a reply schema in package
// schemas (qry/<service>.<endpoint>.json and rpl/<service>.<endpoint>.json);
// Serve refuses, serving nothing, when one lacks them. A request that does not
// match its schema is answered CodeInvalid without calling the handler; a
// reply that does not match its schema is a bug of the service: it is logged
// and answered CodeInternal instead.
func (b *Bus) Serve(version, description string, endpoints map[string]QueryHandler) (micro.Service, error) {
	contracts := make(map[string]schemas.Query, len(endpoints))
	var missing []error
	for _, name := range slices.Sorted(maps.Keys(endpoints)) {
		q, err := schemas.LookupQuery(b.Service(), name)
		if err != nil {
			missing = append(missing, err)
			continue
		}
		contracts[name] = q
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("bus: micro service %s: every endpoint needs its schemas: %w", b.Service(), errors.Join(missing...))
	}
	svc, err := micro.AddService(b.nc, micro.Config{
		Name:        microName.ReplaceAllString(b.Service(), "_"),
		Version:     version,
		Description: description,
		Metadata:    map[string]string{"prefix": b.cfg.Prefix},
	})
	if err != nil {
		return nil, fmt.Errorf("bus: micro service %s: %w", b.Service(), err)
	}
	group := svc.AddGroup(b.cfg.Prefix + ".api." + b.Service())
	sem := make(chan struct{}, maxQueriesInFlight)
	for name, h := range endpoints {
		q := contracts[name]
		handler := b.queryHandler(b.cfg.Prefix+".api."+b.Service()+"."+name, name, h, sem)
		meta := map[string]string{"request_schema": q.Request.ID(), "reply_schema": q.Reply.ID()}
		if err := group.AddEndpoint(name, handler, micro.WithEndpointSubject(name+".*"), micro.WithEndpointMetadata(meta)); err != nil {
			_ = svc.Stop()
			return nil, fmt.Errorf("bus: endpoint %q of %s: %w", name, b.Service(), err)
		}
	}
	// Make sure the server knows the endpoints before anyone is told the
	// service is up; a request racing the subscriptions gets no responders.
	if err := b.nc.Flush(); err != nil {
		_ = svc.Stop()
		return nil, fmt.Errorf("bus: micro service %s: flush: %w", b.Service(), err)
	}
	return svc, nil
}

// queryHandler answers inside micro's callback: micro reads the request's
// error state after the handler returns, so replying from another goroutine
// races with it. Queries are short KV reads; sem still bounds the total.
func (b *Bus) queryHandler(subject, endpoint string, h QueryHandler, sem chan struct{}) micro.Handler {
	return micro.HandlerFunc(func(req micro.Request) {
		sem <- struct{}{}
		defer func() { <-sem }()
		b.answer(subject, endpoint, h, req)
	})
}

// queryBody is what a query's request schema is checked against: an empty
// body is the empty request {}.
func queryBody(data []byte) []byte {
	if len(bytes.TrimSpace(data)) == 0 {
		return []byte("{}")
	}
	return data
}

func (b *Bus) answer(subject, endpoint string, h QueryHandler, req micro.Request) {
	carrier := propagation.MapCarrier{}
	for _, k := range []string{envelope.HeaderTraceParent, envelope.HeaderTraceState} {
		if v := req.Headers().Get(k); v != "" {
			carrier[k] = v
		}
	}
	ctx := envelope.Envelope{TraceParent: carrier[envelope.HeaderTraceParent],
		TraceState: carrier[envelope.HeaderTraceState]}.ExtractTrace(context.Background())
	ctx, cancel := context.WithTimeout(ctx, DefaultQueryTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, senderKey{}, schemas.Sender(req.Subject()))
	ctx, span := tracer().Start(ctx, subject, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("slipway.service", b.Service()),
			attribute.String("messaging.destination.name", subject)))
	defer span.End()

	var (
		body   []byte
		logged bool
		err    = schemas.Validate(schemas.KindQuery, b.Service(), endpoint, queryBody(req.Data()))
	)
	if err != nil {
		err = Invalid(fmt.Errorf("bad request: %w", err))
	} else {
		var result any
		result, err = callQuery(ctx, h, req.Data())
		if err == nil {
			body, err = encode(result)
		}
		if err == nil {
			if verr := schemas.Validate(schemas.KindReply, b.Service(), endpoint, body); verr != nil {
				// The service's own bug: nobody gets a reply that breaks the contract.
				err = fmt.Errorf("the reply does not match its schema: %w", verr)
				b.log.Error("bus: query reply refused: it does not match its schema", "subject", subject, "err", verr)
				logged = true
			}
		}
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		code := ErrorCode(err)
		if code == "" {
			code = CodeInternal
			if !logged {
				b.log.Error("bus: query failed", "subject", subject, "err", err)
			}
		}
		if rerr := req.Error(code, err.Error(), nil); rerr != nil {
			b.log.Warn("bus: query error reply failed", "subject", subject, "err", rerr)
		}
		return
	}
	if err := req.Respond(body); err != nil {
		b.log.Warn("bus: query reply failed", "subject", subject, "err", err)
	}
}

// senderKey keys the asker of a query in its handler's context.
type senderKey struct{}

// QuerySender is who asked the query whose handler has ctx: the last token
// of the subject it was asked on, which the NATS server lets only that
// principal publish (schemas.Sender).
func QuerySender(ctx context.Context) string {
	s, _ := ctx.Value(senderKey{}).(string)
	return s
}

func callQuery(ctx context.Context, h QueryHandler, data []byte) (result any, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("query handler panicked: %v", r)
		}
	}()
	return h(ctx, data)
}

// Query asks service's endpoint and decodes the JSON answer into resp
// (nil: ignore it). An error reply becomes a *QueryError.
//
// The answer is checked against the endpoint's reply schema before anything
// is decoded: a reply that does not match it (a buggy or forged responder)
// fails the query, with an error naming the query and the problem that
// matches schemas.ErrInvalid or schemas.ErrMalformed, and resp is left as it
// was. A query that has no schemas is refused before anything is sent.
func (b *Bus) Query(ctx context.Context, service, endpoint string, req any, resp any) error {
	subject := b.QuerySubject(service, endpoint)
	if _, err := schemas.LookupQuery(service, endpoint); err != nil {
		return fmt.Errorf("query %s: %w", subject, err)
	}
	body, err := encode(req)
	if err != nil {
		return fmt.Errorf("query %s: encode request: %w", subject, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultQueryTimeout)
		defer cancel()
	}
	ctx, span := tracer().Start(ctx, subject, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("messaging.destination.name", subject)))
	defer span.End()
	var env envelope.Envelope
	env.InjectTrace(ctx)
	msg := nats.NewMsg(subject)
	msg.Data = body
	if env.TraceParent != "" {
		msg.Header.Set(envelope.HeaderTraceParent, env.TraceParent)
	}
	if env.TraceState != "" {
		msg.Header.Set(envelope.HeaderTraceState, env.TraceState)
	}
	reply, err := b.nc.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		err = &QueryError{Code: CodeUnavailable, Description: fmt.Sprintf("no %s service answers on %s", service, subject)}
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
		return fmt.Errorf("query %s: %w", subject, err)
	}
	if code := reply.Header.Get(micro.ErrorCodeHeader); code != "" {
		qe := &QueryError{Code: code, Description: reply.Header.Get(micro.ErrorHeader)}
		span.SetStatus(codes.Error, qe.Error())
		return qe
	}
	if err := schemas.Validate(schemas.KindReply, service, endpoint, reply.Data); err != nil {
		err = fmt.Errorf("query %s: reply refused, it does not match its schema: %w", subject, err)
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
		return err
	}
	if resp == nil {
		return nil
	}
	if err := json.Unmarshal(reply.Data, resp); err != nil {
		return fmt.Errorf("query %s: decode answer: %w", subject, err)
	}
	return nil
}
