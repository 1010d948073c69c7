package saga

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
)

// Defaults of the engine's tunables.
const (
	DefaultRetention = 7 * 24 * time.Hour
	DefaultLease     = 5 * time.Minute
)

// Engine knows the workflow definitions and runs compensations and the
// reconciler over a Store.
type Engine struct {
	st   *Store
	defs map[string]Definition
	id   string // names this engine in lease tokens

	// Retention is how long a finished saga is kept before the reconciler
	// deletes it (DefaultRetention when zero).
	Retention time.Duration
	// Lease is how long a compensation may run before another engine may
	// take it over (DefaultLease when zero). It is renewed after each
	// phase, so it bounds one phase's compensation, not all of them.
	Lease time.Duration
	// Hooks are used by Reconcile (RunReconciler takes its own).
	Hooks Hooks
	// Logger gets the reconciler's messages (slog.Default when nil).
	Logger *slog.Logger
}

// Hooks let the saga's owner take over reconciler decisions.
type Hooks struct {
	// Expired is called for a running saga whose phase deadline passed.
	// The owner fails it (Store.Fail with s.ExpiredMessage(), plus its own
	// bookkeeping, such as putting an image in ERROR). When nil, the
	// engine fails the saga itself. Either way, if the saga is then
	// compensating, the engine compensates it.
	Expired func(ctx context.Context, s *Saga) error
	// Resume is called once per running saga on the first pass of
	// RunReconciler, i.e. after a restart, so the owner can pick up work
	// that was in flight in a crashed process (e.g. a commit phase that
	// no message will redeliver). It must be idempotent: another replica
	// may be working on the same saga.
	Resume func(ctx context.Context, s *Saga) error
}

// NewEngine returns an engine over st for the given workflow kinds.
func NewEngine(st *Store, defs ...Definition) *Engine {
	e := &Engine{st: st, defs: make(map[string]Definition, len(defs)), id: uuid.NewString()}
	for _, d := range defs {
		e.defs[d.Kind] = d
	}
	return e
}

// Store returns the engine's store.
func (e *Engine) Store() *Store { return e.st }

// Definition returns the definition of a workflow kind.
func (e *Engine) Definition(kind string) (Definition, bool) {
	d, ok := e.defs[kind]
	return d, ok
}

func (e *Engine) lease() time.Duration {
	if e.Lease > 0 {
		return e.Lease
	}
	return DefaultLease
}

func (e *Engine) retention() time.Duration {
	if e.Retention > 0 {
		return e.Retention
	}
	return DefaultRetention
}

func (e *Engine) log() *slog.Logger {
	if e.Logger != nil {
		return e.Logger
	}
	return slog.Default()
}

// Compensate undoes a failing saga: it runs the Compensate function of the
// current phase and of every earlier phase of its history, newest first,
// then marks the saga failed. A running saga is moved to compensating
// first (keep its reason by calling Store.Fail before). Phases already
// compensated are skipped, so calling it again after a crash or an error
// resumes where it stopped; on a finished saga it does nothing.
//
// When a compensation fails, the saga stays compensating (with a note in
// its history) and the error is returned; the reconciler retries later.
// When another Compensate call (of this engine or of a replica) holds the
// saga's lease, it returns an error matching ErrBusy.
func (e *Engine) Compensate(ctx context.Context, id string) error {
	// The lease belongs to this call, not to the engine: a handler and the
	// reconciler of one process must not compensate side by side either.
	token := e.id + "/" + uuid.NewString()
	s, err := e.acquire(ctx, id, token)
	if err != nil {
		return err
	}
	if s.Status.Finished() {
		return nil
	}
	def, ok := e.defs[s.Kind]
	if !ok {
		err := fmt.Errorf("saga %s: %w %q", id, ErrUnknownKind, s.Kind)
		e.release(ctx, id, token, err.Error())
		return err
	}
	phases := s.Visited()
	slices.Reverse(phases)
	for _, p := range phases {
		if slices.Contains(s.Compensated, p) {
			continue
		}
		fn := def.Phases[p].Compensate
		if fn == nil {
			continue
		}
		if err := fn(ctx, s.clone()); err != nil {
			err = fmt.Errorf("saga %s: compensate phase %q: %w", id, p, err)
			e.release(ctx, id, token, err.Error())
			return err
		}
		if s, err = e.markCompensated(ctx, id, token, p); err != nil {
			return err
		}
	}
	_, err = e.st.Update(ctx, id, func(s *Saga) error {
		if err := holds(s, token); err != nil {
			return err
		}
		s.Status = StatusFailed
		s.LeaseOwner, s.LeaseUntil = "", time.Time{}
		s.record(s.Phase, StatusFailed, e.st.now(), "compensated")
		return nil
	})
	return err
}

// acquire takes the compensation lease, moving a running saga to
// compensating. A finished saga is returned untouched.
func (e *Engine) acquire(ctx context.Context, id, token string) (*Saga, error) {
	return e.st.Update(ctx, id, func(s *Saga) error {
		if s.Status.Finished() {
			return ErrNoChange
		}
		now := e.st.now()
		if s.LeaseOwner != "" && now.Before(s.LeaseUntil) {
			return fmt.Errorf("saga %s: %w until %s", s.ID, ErrBusy, s.LeaseUntil.Format(time.RFC3339))
		}
		if s.Status == StatusRunning {
			s.Status = StatusCompensating
			s.record(s.Phase, StatusCompensating, now, "compensation requested")
		}
		s.LeaseOwner, s.LeaseUntil = token, now.Add(e.lease())
		return nil
	})
}

// holds fails when the lease was lost (it expired and someone else took
// the saga over): the newcomer finishes the job.
func holds(s *Saga, token string) error {
	if s.LeaseOwner != token {
		return fmt.Errorf("saga %s: %w: lease lost to %q", s.ID, ErrBusy, s.LeaseOwner)
	}
	return nil
}

func (e *Engine) markCompensated(ctx context.Context, id, token string, p Phase) (*Saga, error) {
	return e.st.Update(ctx, id, func(s *Saga) error {
		if err := holds(s, token); err != nil {
			return err
		}
		now := e.st.now()
		s.Compensated = append(s.Compensated, p)
		s.LeaseUntil = now.Add(e.lease())
		s.record(p, StatusCompensating, now, "phase compensated")
		return nil
	})
}

// release gives the lease up after an error, noting why, so the next
// reconciler pass (of any replica) can retry at once.
func (e *Engine) release(ctx context.Context, id, token, why string) {
	// Also after ctx was cancelled: a lease left behind blocks retries
	// until it expires.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_, err := e.st.Update(ctx, id, func(s *Saga) error {
		if s.LeaseOwner != token {
			return ErrNoChange
		}
		s.LeaseOwner, s.LeaseUntil = "", time.Time{}
		s.record(s.Phase, StatusCompensating, e.st.now(), why)
		return nil
	})
	if err != nil {
		e.log().Warn("saga: releasing compensation lease", "saga", id, "error", err)
	}
}

// ExpiredMessage says which phase ran out of time, e.g.
// `phase "convert" did not finish within 30m0s`.
func (s *Saga) ExpiredMessage() string {
	d := s.PhaseDuration()
	if d >= time.Second {
		d = d.Round(time.Second)
	} else {
		d = d.Round(time.Millisecond)
	}
	return fmt.Sprintf("phase %q did not finish within %s", s.Phase, d)
}
