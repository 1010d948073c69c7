package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/kvstore"
)

// causedBy links an event to the message that caused it and derives its
// ID from that message and what it says, so publishing it again after a
// redelivery is dropped by JetStream as a duplicate.
func causedBy(parent envelope.Envelope, what string) []bus.PubOption {
	return []bus.PubOption{bus.CausedBy(parent), bus.WithID(envelope.StepID(parent.ID, what))}
}

// cause is what a VM's background work remembers of the command that
// started it, so the events it publishes later still point to it.
type cause struct {
	env envelope.Envelope
	ok  bool
}

func causeOf(m *bus.Msg) cause {
	if m == nil {
		return cause{}
	}
	return cause{env: m.Envelope, ok: true}
}

// opts returns the publish options of the event numbered seq of VM id:
// its ID is derived from the VM and seq (a retried transition publishes
// the same ID), and it is caused by the command when there is one.
func (c cause) opts(id int64, seq int64) []bus.PubOption {
	eid := envelope.StepID("vm-"+strconv.FormatInt(id, 10), "state-"+strconv.FormatInt(seq, 10))
	if !c.ok {
		return []bus.PubOption{bus.WithID(eid)}
	}
	return []bus.PubOption{bus.CausedBy(c.env), bus.WithID(eid)}
}

// processed is what the dedup bucket remembers of a create command (key =
// a digest of its ce-id): the ID it produced.
type processed struct {
	ID int64 `json:"id"`
}

func dedupKey(ceID string) string {
	return envelope.StepID("launcher-dedup", ceID)
}

// processedBefore returns the ID a create command produced when it was
// handled before: a redelivery must not create twice.
func (s *Service) processedBefore(ctx context.Context, m *bus.Msg) (int64, bool, error) {
	if m.Envelope.ID == "" {
		return 0, false, nil
	}
	e, err := s.dedup.Get(ctx, dedupKey(m.Envelope.ID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("dedup: read command %s: %w", m.Envelope.ID, err)
	}
	var p processed
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return 0, false, fmt.Errorf("dedup: decode command %s: %w", m.Envelope.ID, err)
	}
	return p.ID, true, nil
}

// priorCreate returns what an earlier delivery of the create command m
// made (processedBefore): its ID, whether there was one, and its record
// when that delivery stored it (nil when it stopped before).
func priorCreate[T any](ctx context.Context, s *Service, m *bus.Msg, store *kvstore.Store[int64, T]) (int64, bool, *T, error) {
	id, done, err := s.processedBefore(ctx, m)
	if err != nil || !done {
		return id, done, nil, err
	}
	rec, _, err := store.Get(ctx, id)
	if errors.Is(err, kvstore.ErrNotFound) {
		return id, true, nil, nil
	}
	return id, true, rec, err
}

// markProcessed records the ID a create command produced.
func (s *Service) markProcessed(ctx context.Context, m *bus.Msg, id int64) error {
	if m.Envelope.ID == "" {
		return nil
	}
	b, _ := json.Marshal(processed{ID: id})
	if _, err := s.dedup.Put(ctx, dedupKey(m.Envelope.ID), b); err != nil {
		return fmt.Errorf("dedup: record command %s: %w", m.Envelope.ID, err)
	}
	return nil
}
