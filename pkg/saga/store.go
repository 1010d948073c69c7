package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxTries bounds the read-modify-write loop of Update. Each conflict means
// another writer made progress, so hitting the bound needs heavy contention
// on a single saga.
const maxTries = 20

// Store keeps sagas in a JetStream KV bucket (key = saga ID).
type Store struct {
	kv  jetstream.KeyValue
	now func() time.Time
}

// NewStore returns a store over kv. The bucket should keep one revision per
// key (history 1): the saga carries its own history.
func NewStore(kv jetstream.KeyValue) *Store {
	return &Store{kv: kv, now: func() time.Time { return time.Now().UTC() }}
}

// Create stores a new saga. Empty Status becomes running, zero timestamps
// become now, and an empty History gets a first step for s.Phase. It fails
// with ErrExists when the ID is taken. On success s.Revision is set.
func (st *Store) Create(ctx context.Context, s *Saga) error {
	if s.ID == "" || s.Kind == "" {
		return fmt.Errorf("saga create: ID and Kind are required (got ID %q, Kind %q)", s.ID, s.Kind)
	}
	now := st.now()
	if s.Status == "" {
		s.Status = StatusRunning
	}
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now
	}
	if s.UpdatedAt.IsZero() {
		s.UpdatedAt = now
	}
	if len(s.History) == 0 {
		s.record(s.Phase, s.Status, now, "started")
	}
	b, err := json.Marshal(s)
	if err != nil {
		return fmt.Errorf("saga %s: encode: %w", s.ID, err)
	}
	rev, err := st.kv.Create(ctx, s.ID, b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("saga %s: %w", s.ID, ErrExists)
	}
	if err != nil {
		return fmt.Errorf("saga %s: create: %w", s.ID, err)
	}
	s.Revision = rev
	return nil
}

// Get reads a saga; ErrNotFound when there is none.
func (st *Store) Get(ctx context.Context, id string) (*Saga, error) {
	e, err := st.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("saga %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("saga %s: get: %w", id, err)
	}
	var s Saga
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		return nil, fmt.Errorf("saga %s: decode revision %d: %w", id, e.Revision(), err)
	}
	s.Revision = e.Revision()
	return &s, nil
}

// Update reads the saga, applies fn and writes the result if the revision
// is still the one read; on a conflict it reads again and re-applies fn, so
// fn must only depend on the saga it is given. fn returning ErrNoChange
// writes nothing and Update returns the saga as read; any other error from
// fn is returned as is.
func (st *Store) Update(ctx context.Context, id string, fn func(s *Saga) error) (*Saga, error) {
	for try := 0; try < maxTries; try++ {
		cur, err := st.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		next := cur.clone()
		if err := fn(next); errors.Is(err, ErrNoChange) {
			return cur, nil
		} else if err != nil {
			return nil, err
		}
		next.ID = cur.ID // the key is the identity; fn cannot move a saga
		next.UpdatedAt = st.now()
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("saga %s: encode: %w", id, err)
		}
		rev, err := st.kv.Update(ctx, id, b, cur.Revision)
		if err == nil {
			next.Revision = rev
			return next, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, fmt.Errorf("saga %s: write revision %d: %w", id, cur.Revision+1, err)
		}
		if err := backoff(ctx, try); err != nil {
			return nil, fmt.Errorf("saga %s: update: %w", id, err)
		}
	}
	return nil, fmt.Errorf("saga %s: %w after %d tries", id, ErrConflict, maxTries)
}

// backoff sleeps a little, with jitter, so racing writers spread out.
func backoff(ctx context.Context, try int) error {
	d := time.Duration(1+rand.IntN(5*(try+1))) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Advance moves a running saga from phase from to phase to, with a deadline
// of now+deadline (none when deadline is 0). If the saga is not running or
// not in phase from, it returns a *PhaseError (errors.Is ErrWrongPhase) and
// writes nothing, so a duplicate delivery cannot advance twice.
func (st *Store) Advance(ctx context.Context, id string, from, to Phase, deadline time.Duration, note string) (*Saga, error) {
	return st.Update(ctx, id, func(s *Saga) error {
		if s.Status != StatusRunning || s.Phase != from {
			return &PhaseError{ID: s.ID, Want: from, Actual: s.Phase, Status: s.Status}
		}
		now := st.now()
		s.Phase = to
		s.Deadline = time.Time{}
		if deadline > 0 {
			s.Deadline = now.Add(deadline)
		}
		s.record(to, StatusRunning, now, note)
		return nil
	})
}

// Own records a resource (an s3:// URL) that compensation must delete.
// Recording the same resource twice is a no-op.
func (st *Store) Own(ctx context.Context, id string, resource string) error {
	_, err := st.Update(ctx, id, func(s *Saga) error {
		if slices.Contains(s.Owned, resource) {
			return ErrNoChange
		}
		s.Owned = append(s.Owned, resource)
		return nil
	})
	return err
}

// Succeed marks a running saga succeeded. Succeeding twice is a no-op; a
// saga that failed or is compensating gives an ErrNotRunning error.
func (st *Store) Succeed(ctx context.Context, id, note string) (*Saga, error) {
	return st.Update(ctx, id, func(s *Saga) error {
		switch s.Status {
		case StatusSucceeded:
			return ErrNoChange
		case StatusRunning:
		default:
			return fmt.Errorf("saga %s: cannot succeed: %w (it is %s: %s)", s.ID, ErrNotRunning, s.Status, s.Error)
		}
		now := st.now()
		s.Status = StatusSucceeded
		s.Deadline = time.Time{}
		s.record(s.Phase, StatusSucceeded, now, note)
		return nil
	})
}

// Fail marks a running saga as failed with reason and moves it to
// compensating; run Engine.Compensate (or let the reconciler do it) to undo
// its phases. Failing a saga that is already failing or failed keeps the
// first reason; failing a succeeded saga gives an ErrNotRunning error.
func (st *Store) Fail(ctx context.Context, id, reason string) (*Saga, error) {
	return st.Update(ctx, id, func(s *Saga) error {
		switch s.Status {
		case StatusCompensating, StatusFailed:
			return ErrNoChange
		case StatusSucceeded:
			return fmt.Errorf("saga %s: cannot fail (%s): %w: it already succeeded", s.ID, reason, ErrNotRunning)
		}
		now := st.now()
		s.Status = StatusCompensating
		s.Error = reason
		s.Deadline = time.Time{}
		s.record(s.Phase, StatusCompensating, now, reason)
		return nil
	})
}

// Expire fails a running saga whose phase deadline has passed, with
// ExpiredMessage as the reason. It re-checks under compare-and-set, so a
// saga that advanced or finished meanwhile is returned unchanged.
func (st *Store) Expire(ctx context.Context, id string) (*Saga, error) {
	return st.Update(ctx, id, func(s *Saga) error {
		if s.Status != StatusRunning || s.Deadline.IsZero() || !st.now().After(s.Deadline) {
			return ErrNoChange
		}
		reason := s.ExpiredMessage()
		s.Status = StatusCompensating
		s.Error = reason
		s.Deadline = time.Time{}
		s.record(s.Phase, StatusCompensating, st.now(), reason)
		return nil
	})
}

// List returns every saga in the bucket. Sagas deleted while listing are
// skipped.
func (st *Store) List(ctx context.Context) ([]*Saga, error) {
	lister, err := st.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("saga list: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var out []*Saga
	for key := range lister.Keys() {
		s, err := st.Get(ctx, key)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("saga list: %w", err)
	}
	return out, nil
}

// Delete removes a saga (and the history of its key).
func (st *Store) Delete(ctx context.Context, id string) error {
	if err := st.kv.Purge(ctx, id); err != nil {
		return fmt.Errorf("saga %s: delete: %w", id, err)
	}
	return nil
}

// deleteAt removes a saga only if it is still at revision rev, so a
// reconciler cannot drop a saga that changed after it looked.
func (st *Store) deleteAt(ctx context.Context, id string, rev uint64) error {
	err := st.kv.Purge(ctx, id, jetstream.LastRevision(rev))
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil // someone else touched or removed it: not ours to delete now
	}
	if err != nil {
		return fmt.Errorf("saga %s: delete: %w", id, err)
	}
	return nil
}
