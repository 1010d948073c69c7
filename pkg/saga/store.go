package saga

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/kvstore"
)

// Store keeps sagas in a JetStream KV bucket (key = saga ID), through the
// one compare-and-set store of pkg/kvstore.
type Store struct {
	kv   jetstream.KeyValue
	recs *kvstore.Store[string, Saga]
	now  func() time.Time
}

// NewStore returns a store over kv. The bucket should keep one revision per
// key (history 1): the saga carries its own history.
func NewStore(kv jetstream.KeyValue) *Store {
	recs := kvstore.New[string](kv, kvstore.Config[Saga]{What: "saga",
		Revision: func(s *Saga, rev uint64) { s.Revision = rev }})
	return &Store{kv: kv, recs: recs, now: func() time.Time { return time.Now().UTC() }}
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
	rev, err := st.recs.Create(ctx, s.ID, s)
	if errors.Is(err, kvstore.ErrExists) {
		return fmt.Errorf("saga %s: %w", s.ID, ErrExists)
	}
	if err != nil {
		return err
	}
	s.Revision = rev
	return nil
}

// Get reads a saga; ErrNotFound when there is none.
func (st *Store) Get(ctx context.Context, id string) (*Saga, error) {
	s, _, err := st.recs.Get(ctx, id)
	return s, notFound(id, err)
}

// notFound gives the store's not-found its own sentinel, so a caller
// matching ErrNotFound never takes another record's absence for a saga's.
func notFound(id string, err error) error {
	if errors.Is(err, kvstore.ErrNotFound) {
		return fmt.Errorf("saga %s: %w", id, ErrNotFound)
	}
	return err
}

// Update reads the saga, applies fn and writes the result if the revision
// is still the one read; on a conflict it reads again and re-applies fn, so
// fn must only depend on the saga it is given. fn returning ErrNoChange
// writes nothing and Update returns the saga as read; any other error from
// fn is returned as is.
func (st *Store) Update(ctx context.Context, id string, fn func(s *Saga) error) (*Saga, error) {
	s, _, err := st.recs.Update(ctx, id, func(next *Saga) error {
		if err := fn(next); err != nil {
			return err
		}
		next.ID = id // the key is the identity; fn cannot move a saga
		next.UpdatedAt = st.now()
		return nil
	})
	if err != nil {
		return nil, notFound(id, err)
	}
	return s, nil
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
	all, err := st.recs.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]*Saga, len(all))
	for i := range all {
		out[i] = &all[i]
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
