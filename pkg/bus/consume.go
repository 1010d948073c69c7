package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// Msg is one delivered command or event.
type Msg struct {
	Envelope  envelope.Envelope
	Subject   string
	Data      []byte
	Header    nats.Header
	Delivered uint64 // how many times it was delivered, this one included
	StreamSeq uint64
	Stream    string
	// Service and Name come from the subject: cmd.<service>.<verb>.<sender>
	// or evt.<service>.<event>.<id>; ID is the event's id token ("" for
	// commands).
	Service, Name, ID string
	// Sender is who sent a command: its subject's last token, which the
	// NATS server lets only that principal publish (schemas.Sender); ""
	// for an event, whose sender is its Service.
	Sender string

	raw jetstream.Msg
}

// UserOf is the user who sent a command, for a service acting on their
// behalf (schemas' on_behalf_of): its Sender, unless that is a service.
func UserOf(m *Msg) string {
	if m.Sender == "" || schemas.IsService(m.Sender) {
		return ""
	}
	return m.Sender
}

// Decode unmarshals the payload into v, refusing unknown fields and
// trailing data: a producer sending a field the consumer ignores is a bug.
func (m *Msg) Decode(v any) error {
	if len(bytes.TrimSpace(m.Data)) == 0 {
		return fmt.Errorf("decode %s: the body is empty, want a JSON object", m.Subject)
	}
	dec := json.NewDecoder(bytes.NewReader(m.Data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode %s: %w", m.Subject, err)
	}
	if dec.More() {
		return fmt.Errorf("decode %s: unexpected data after the JSON value", m.Subject)
	}
	return nil
}

// InProgress tells the server the message is still being worked on,
// resetting its ack timer.
func (m *Msg) InProgress() error {
	if m.raw == nil {
		return errors.New("bus: message was not delivered by JetStream")
	}
	return m.raw.InProgress()
}

// Handler processes one message. nil acknowledges it, a Terminal error
// terminates it, any other error asks for redelivery after a backoff.
type Handler func(ctx context.Context, m *Msg) error

// Stopper stops a consumer.
type Stopper interface {
	// Stop stops fetching and waits for the handlers in flight to return.
	Stop()
}

// Drain stops a service that has ended: svc first (no more queries), then
// the consumers, waiting up to timeout for the handlers in flight. Past
// timeout, cancel (which ends the handlers' context) runs and Drain waits
// for them to return. name prefixes the warnings on log.
func Drain(log *slog.Logger, name string, svc micro.Service, timeout time.Duration, cancel func(), consumers ...Stopper) {
	if err := svc.Stop(); err != nil {
		log.Warn(name+": stopping micro service", "err", err)
	}
	drained := make(chan struct{})
	go func() {
		for _, c := range consumers {
			c.Stop()
		}
		close(drained)
	}()
	select {
	case <-drained:
	case <-time.After(timeout):
		log.Warn(name+": handlers did not finish in time; cancelling them", "timeout", timeout)
		cancel()
		<-drained
	}
}

type consumeConfig struct {
	ackWait     time.Duration
	maxDeliver  int
	concurrency int
	backoff     func(delivered uint64) time.Duration
	deliverNew  bool
	jobDeadline time.Duration
}

// ConsumeOption tunes a consumer.
type ConsumeOption func(*consumeConfig)

// AckWait is how long the server waits for an ack before redelivering
// (default 30s). Handlers get a heartbeat every AckWait/3, so only a dead
// process lets it expire.
func AckWait(d time.Duration) ConsumeOption { return func(c *consumeConfig) { c.ackWait = d } }

// MaxDeliver is how many deliveries a message gets before it is dead-lettered
// (default 10).
func MaxDeliver(n int) ConsumeOption { return func(c *consumeConfig) { c.maxDeliver = n } }

// Concurrency is how many handlers run at once (default 1).
func Concurrency(n int) ConsumeOption { return func(c *consumeConfig) { c.concurrency = n } }

// Backoff is the redelivery delay after a retryable error on the given
// delivery (default: 1s, 2s, 4s … capped at 1 min).
func Backoff(f func(delivered uint64) time.Duration) ConsumeOption {
	return func(c *consumeConfig) { c.backoff = f }
}

// DeliverNew makes a new durable event consumer start at new events instead
// of the whole retained history. It only matters when the consumer is created.
func DeliverNew() ConsumeOption { return func(c *consumeConfig) { c.deliverNew = true } }

// JobDeadline bounds the wall-clock time of each delivery's handler
// (default: none). Heartbeats keep a working handler's message alive for
// ever; this is what ends a job that works without end. The handler's
// context ends with a *DeadlineError as its cause (see JobExpired), and a
// handler that then returns a retryable error has its message terminated
// anyway: the same job would run out of time again.
func JobDeadline(d time.Duration) ConsumeOption { return func(c *consumeConfig) { c.jobDeadline = d } }

// DeadlineError is the cause of a handler's context that reached its
// JobDeadline.
type DeadlineError struct{ Limit time.Duration }

func (e *DeadlineError) Error() string {
	return fmt.Sprintf("the job ran longer than its deadline of %s (%s)", e.Limit, EnvJobDeadline)
}

// EnvJobDeadline is the variable the workers read their JobDeadline from
// (a Go duration); DefaultJobDeadline is what they use when it is unset.
const (
	EnvJobDeadline     = "SLIPWAY_JOB_DEADLINE"
	DefaultJobDeadline = 6 * time.Hour
)

// JobExpired returns the *DeadlineError that ended ctx, a handler's
// context, or nil when ctx has not reached its job deadline. A handler
// that gets one reports it as a terminal failure, through a context that
// is not ctx (context.WithoutCancel), which has ended.
func JobExpired(ctx context.Context) error {
	var de *DeadlineError
	if ctx.Err() != nil && errors.As(context.Cause(ctx), &de) {
		return de
	}
	return nil
}

// DefaultBackoff doubles from 1s per delivery, capped at one minute.
func DefaultBackoff(delivered uint64) time.Duration {
	if delivered < 1 {
		delivered = 1
	}
	if delivered > 7 {
		return time.Minute
	}
	return min(time.Second<<(delivered-1), time.Minute)
}

func newConsumeConfig(opts []ConsumeOption) consumeConfig {
	c := consumeConfig{ackWait: 30 * time.Second, maxDeliver: 10, concurrency: 1, backoff: DefaultBackoff}
	for _, o := range opts {
		o(&c)
	}
	if c.ackWait <= 0 {
		c.ackWait = 30 * time.Second
	}
	if c.concurrency < 1 {
		c.concurrency = 1
	}
	if c.backoff == nil {
		c.backoff = DefaultBackoff
	}
	return c
}

// ConsumeCommands runs h on this service's commands through the durable
// consumer named after the service.
func (b *Bus) ConsumeCommands(ctx context.Context, h Handler, opts ...ConsumeOption) (Stopper, error) {
	cc := newConsumeConfig(opts)
	cfg := jetstream.ConsumerConfig{
		Durable:       b.Service(),
		Description:   "commands of " + b.Service(),
		FilterSubject: b.CommandFilter(b.Service()),
	}
	return b.consume(ctx, b.CommandStream(), cfg, cc, h)
}

// ConsumeEvents runs h on the events matching filters through a durable
// consumer on the event stream.
func (b *Bus) ConsumeEvents(ctx context.Context, durable string, filters []string, h Handler, opts ...ConsumeOption) (Stopper, error) {
	if !validToken(durable) {
		return nil, fmt.Errorf("bus: durable name %q must not be empty nor contain '.', '*', '>' or spaces", durable)
	}
	if len(filters) == 0 {
		return nil, fmt.Errorf("bus: consumer %s: no filter subjects", durable)
	}
	cc := newConsumeConfig(opts)
	cfg := jetstream.ConsumerConfig{Durable: durable, Description: "events for " + b.Service()}
	if len(filters) == 1 {
		cfg.FilterSubject = filters[0]
	} else {
		cfg.FilterSubjects = filters
	}
	if cc.deliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	return b.consume(ctx, b.EventStream(), cfg, cc, h)
}

func (b *Bus) consume(ctx context.Context, stream string, cfg jetstream.ConsumerConfig, cc consumeConfig, h Handler) (Stopper, error) {
	cfg.AckPolicy = jetstream.AckExplicitPolicy
	cfg.AckWait = cc.ackWait
	cfg.MaxDeliver = cc.maxDeliver
	cons, err := b.js.CreateOrUpdateConsumer(ctx, stream, cfg)
	if err != nil {
		return nil, fmt.Errorf("bus: consumer %s on stream %s: %w", cfg.Durable, stream, err)
	}
	fetchCtx, cancel := context.WithCancel(ctx)
	w := &worker{bus: b, cons: cons, cc: cc, h: h, base: ctx,
		log: b.log.With("stream", stream, "consumer", cfg.Durable), cancel: cancel}
	for range cc.concurrency {
		w.wg.Add(1)
		go w.loop(fetchCtx)
	}
	return w, nil
}

type worker struct {
	bus    *Bus
	cons   jetstream.Consumer
	cc     consumeConfig
	h      Handler
	base   context.Context // handlers' parent: cancelled only by the caller's ctx
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (w *worker) Stop() {
	w.cancel()
	w.wg.Wait()
}

// loop pulls one message at a time, so a message never waits in a client
// buffer while its ack timer runs.
func (w *worker) loop(ctx context.Context) {
	defer w.wg.Done()
	pause := 100 * time.Millisecond
	for ctx.Err() == nil {
		msg, err := w.cons.Next(jetstream.FetchContext(ctx))
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if !errors.Is(err, nats.ErrTimeout) {
				w.log.Warn("bus: fetch failed, retrying", "err", err, "in", pause)
				select {
				case <-ctx.Done():
					return
				case <-time.After(pause):
				}
				pause = min(pause*2, 5*time.Second)
			}
			continue
		}
		pause = 100 * time.Millisecond
		w.handle(msg)
	}
}

func (w *worker) handle(raw jetstream.Msg) {
	m, err := w.bus.newMsg(raw)
	if err != nil {
		// A malformed envelope stays malformed however often it is retried.
		w.log.Error("bus: terminating message with a bad envelope", "subject", raw.Subject(), "err", err)
		if err := raw.TermWithReason(err.Error()); err != nil {
			w.log.Warn("bus: term failed", "subject", raw.Subject(), "err", err)
		}
		return
	}
	ctx := m.Envelope.ExtractTrace(w.base)
	ctx, span := tracer().Start(ctx, w.bus.spanSubject(m.Subject)+" process",
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(messagingAttrs(m.Subject, m.Envelope)...),
		trace.WithAttributes(
			attribute.String("slipway.service", w.bus.Service()),
			attribute.String("slipway.sender", m.Sender),
			attribute.Int64("messaging.nats.delivered", int64(m.Delivered)),
		))
	defer span.End()

	if d := w.cc.jobDeadline; d > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, d, &DeadlineError{Limit: d})
		defer cancel()
	}
	stop := w.heartbeat(m)
	err = w.run(ctx, m)
	stop()
	if expired := JobExpired(ctx); err != nil && expired != nil && !IsTerminal(err) {
		err = Terminal(fmt.Errorf("%w: %w", expired, err))
	}
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	w.settle(m, err)
}

// run calls the handler, turning a panic into a terminal error: a handler
// that panics on a message will panic on every redelivery.
func (w *worker) run(ctx context.Context, m *Msg) (err error) {
	defer func() {
		if r := recover(); r != nil {
			w.log.Error("bus: handler panicked", "subject", m.Subject, "ce_id", m.Envelope.ID,
				"panic", r, "stack", string(debug.Stack()))
			err = Terminal(fmt.Errorf("handler panicked: %v", r))
		}
	}()
	return w.h(ctx, m)
}

// heartbeat keeps the message alive while the handler works.
func (w *worker) heartbeat(m *Msg) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(max(w.cc.ackWait/3, 10*time.Millisecond))
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				if err := m.raw.InProgress(); err != nil {
					w.log.Warn("bus: heartbeat failed", "subject", m.Subject, "err", err)
				}
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

func (w *worker) settle(m *Msg, err error) {
	log := w.log.With("subject", m.Subject, "ce_id", m.Envelope.ID, "delivered", m.Delivered)
	var ackErr error
	switch {
	case err == nil:
		ackErr = m.raw.Ack()
	case IsTerminal(err):
		log.Error("bus: handler failed, message terminated", "err", err)
		ackErr = m.raw.TermWithReason(err.Error())
	default:
		delay := w.cc.backoff(m.Delivered)
		log.Warn("bus: handler failed, will retry", "err", err, "in", delay)
		ackErr = m.raw.NakWithDelay(delay)
	}
	if ackErr != nil {
		log.Warn("bus: acknowledgement failed; the message will be redelivered", "err", ackErr)
	}
}

func (b *Bus) newMsg(raw jetstream.Msg) (*Msg, error) {
	meta, err := raw.Metadata()
	if err != nil {
		return nil, fmt.Errorf("message metadata: %w", err)
	}
	m := &Msg{
		Subject:   raw.Subject(),
		Data:      raw.Data(),
		Header:    raw.Headers(),
		Delivered: meta.NumDelivered,
		StreamSeq: meta.Sequence.Stream,
		Stream:    meta.Stream,
		raw:       raw,
	}
	m.Service, m.Name, m.ID, m.Sender = b.parseSubject(m.Subject)
	env, err := envelope.FromHeader(m.Header)
	switch {
	case errors.Is(err, envelope.ErrNoEnvelope):
		env = b.synthesize(m, meta)
	case err != nil:
		return nil, err
	}
	m.Envelope = env
	return m, nil
}

// synthesize builds the envelope of a message sent without one (a plain
// `nats pub`). Its ID is derived from where the message sits in the stream,
// so every redelivery sees the same ID and de-duplication still works.
func (b *Bus) synthesize(m *Msg, meta *jetstream.MsgMetadata) envelope.Envelope {
	id := m.Header.Get(nats.MsgIdHdr)
	if id == "" {
		key := meta.Stream + "/" + strconv.FormatUint(meta.Sequence.Stream, 10) + "/" +
			strconv.FormatInt(meta.Timestamp.UnixNano(), 10)
		id = uuid.NewSHA1(uuid.NameSpaceURL, []byte(key)).String()
	}
	kind := "cmd"
	if m.ID != "" {
		kind = "evt"
	}
	env := envelope.Envelope{
		ID:              id,
		Source:          "/slipway/external",
		Subject:         m.ID,
		Time:            meta.Timestamp.UTC(),
		DataContentType: envelope.ContentTypeJSON,
		CorrelationID:   id,
		TraceParent:     m.Header.Get(envelope.HeaderTraceParent),
		TraceState:      m.Header.Get(envelope.HeaderTraceState),
	}
	if m.Service != "" && m.Name != "" {
		env.Type = envelope.Type(m.Service, m.Name)
		env.DataSchema = envelope.DataSchema(kind, m.Service, m.Name)
	}
	return env
}

// parseSubject splits "<prefix>.cmd.<service>.<verb>.<sender>" and
// "<prefix>.evt.<service>.<event>.<id>"; id may itself contain dots, a
// sender may not (the server grants single tokens).
func (b *Bus) parseSubject(subject string) (service, name, id, sender string) {
	rest, ok := strings.CutPrefix(subject, b.cfg.Prefix+".")
	if !ok {
		return "", "", "", ""
	}
	parts := strings.SplitN(rest, ".", 4)
	if len(parts) < 3 {
		return "", "", "", ""
	}
	switch parts[0] {
	case "cmd":
		if len(parts) == 4 && !strings.Contains(parts[3], ".") {
			sender = parts[3]
		}
		return parts[1], parts[2], "", sender
	case "evt":
		if len(parts) == 4 {
			return parts[1], parts[2], parts[3], ""
		}
		return parts[1], parts[2], "", ""
	}
	return "", "", "", ""
}
