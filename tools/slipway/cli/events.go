package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// event is one message seen on "<prefix>.evt.>", its subject split into
// the publishing service, the event name and the ID it is about.
type event struct {
	Subject string
	Service string
	Name    string
	ID      string
	Env     envelope.Envelope
	Data    []byte
}

func (e event) decode(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("event %s: decode: %w", e.Subject, err)
	}
	return nil
}

// watcher is a core NATS subscription to events. Core (not JetStream) is
// enough: it starts before the command is published, so it sees every
// event the command causes, and it leaves no consumer behind when the CLI
// exits.
type watcher struct {
	sub    *nats.Subscription
	ch     chan *nats.Msg
	prefix string
}

// watchBuffer is how many events may queue while the CLI is busy drawing;
// past it NATS drops events for this slow consumer, which the periodic
// show of --wait makes up for.
const watchBuffer = 8192

// watch subscribes to "<prefix>.evt.<filter>" and makes sure the server
// has the interest registered before returning, so a command published
// next cannot beat it.
func watch(nc *nats.Conn, prefix, filter string) (*watcher, error) {
	w := &watcher{ch: make(chan *nats.Msg, watchBuffer), prefix: prefix}
	subject := prefix + ".evt." + filter
	sub, err := nc.ChanSubscribe(subject, w.ch)
	if err != nil {
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	if err := nc.Flush(); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe %s: %w", subject, err)
	}
	w.sub = sub
	return w, nil
}

func (w *watcher) close() { _ = w.sub.Unsubscribe() }

// sendWatched subscribes to the events filter matches, then sends the
// command verb to service, so the watcher sees every event the command
// causes; the caller closes it.
func sendWatched(ctx context.Context, b *bus.Bus, filter, service, verb string, data any, opts ...bus.PubOption) (*watcher, envelope.Envelope, error) {
	w, err := watch(b.Conn(), b.Prefix(), filter)
	if err != nil {
		return nil, envelope.Envelope{}, err
	}
	env, err := b.Command(ctx, service, verb, data, opts...)
	if err != nil {
		w.close()
		return nil, envelope.Envelope{}, err
	}
	return w, env, nil
}

// events exposes the raw channel for select loops; parse what it yields.
func (w *watcher) events() <-chan *nats.Msg { return w.ch }

func (w *watcher) parse(m *nats.Msg) (event, bool) {
	rest, ok := strings.CutPrefix(m.Subject, w.prefix+".evt.")
	if !ok {
		return event{}, false
	}
	parts := strings.SplitN(rest, ".", 3)
	if len(parts) != 3 {
		return event{}, false
	}
	env, _ := envelope.FromHeader(m.Header) // an event sent by hand may lack it
	return event{Subject: m.Subject, Service: parts[0], Name: parts[1], ID: parts[2], Env: env, Data: m.Data}, true
}

// awaitOutcome waits for the catalog's answer to the command whose
// correlation is corr: the first catalog event with that correlation for
// which done returns true, or its failed event, which becomes an error.
// When poll is not nil it is called every interval and ends the wait, with
// an empty event, once it returns true.
func awaitOutcome(ctx context.Context, w *watcher, corr string, done func(event) bool, poll func(context.Context) bool, interval time.Duration) (event, error) {
	ev, err := awaitAnswer(ctx, w, answer{service: schemas.ServiceCatalog, failed: schemas.EventCatalogFailed, corr: corr, done: done}, poll, interval)
	if errors.Is(err, context.DeadlineExceeded) {
		return ev, errors.New("no answer from the catalog in time (is the catalog service running?)")
	}
	return ev, err
}

// answer says which events answer one command: those of service with
// correlation corr; the first for which done returns true ends the wait,
// and a final failed event ends it with an error.
type answer struct {
	service, failed, corr string
	done                  func(event) bool
}

// awaitAnswer waits for a's answer, or for ctx to end (its error). When
// poll is not nil it is called every interval and ends the wait, with an
// empty event, once it returns true.
func awaitAnswer(ctx context.Context, w *watcher, a answer, poll func(context.Context) bool, interval time.Duration) (event, error) {
	var tick <-chan time.Time
	if poll != nil {
		t := time.NewTicker(interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return event{}, ctx.Err()
		case <-tick:
			if poll(ctx) {
				return event{}, nil
			}
			continue
		case m = <-w.ch:
		}
		ev, ok := w.parse(m)
		if !ok || ev.Service != a.service || ev.Env.CorrelationID != a.corr {
			continue
		}
		if ev.Name == a.failed {
			f, final, err := failureOf(ev)
			if err != nil {
				return ev, err
			}
			if final {
				return ev, &failedError{msg: f.Error, code: f.Code}
			}
		}
		if a.done(ev) {
			return ev, nil
		}
	}
}
