package saga

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Reconcile makes one pass over every saga with e.Hooks (see
// RunReconciler). Errors of single sagas are joined; the pass goes on.
func (e *Engine) Reconcile(ctx context.Context) error {
	_, err := e.reconcile(ctx, e.Hooks, false)
	return err
}

// RunReconciler reconciles every interval (with a little jitter, so
// replicas spread out) until ctx is done, then returns nil. Its first pass
// also calls hooks.Resume for running sagas. It is safe to run in several
// replicas: every write is a compare-and-set, so one of them wins each.
//
// A pass:
//   - compensating sagas are compensated (again);
//   - running sagas past their deadline go to hooks.Expired (default: fail
//     with ExpiredMessage) and are compensated;
//   - succeeded and failed sagas not updated for Retention are deleted.
func (e *Engine) RunReconciler(ctx context.Context, interval time.Duration, hooks Hooks) error {
	if interval <= 0 {
		interval = 30 * time.Second
	}
	resume := true
	for {
		listed, err := e.reconcile(ctx, hooks, resume)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			e.log().Warn("saga reconciler pass", "error", err)
		}
		if listed {
			resume = false // keep resuming until one pass could see the sagas
		}
		jitter := time.Duration(rand.Int64N(int64(interval)/10 + 1))
		t := time.NewTimer(interval + jitter)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

func (e *Engine) reconcile(ctx context.Context, hooks Hooks, resume bool) (listed bool, err error) {
	all, err := e.st.List(ctx)
	if err != nil {
		return false, err
	}
	var errs []error
	for _, s := range all {
		if ctx.Err() != nil {
			break
		}
		if err := e.reconcileOne(ctx, s, hooks, resume); err != nil && !errors.Is(err, ErrBusy) && !errors.Is(err, ErrNotFound) {
			errs = append(errs, err)
		}
	}
	return true, errors.Join(errs...)
}

func (e *Engine) reconcileOne(ctx context.Context, s *Saga, hooks Hooks, resume bool) error {
	now := e.st.now()
	switch {
	case s.Status == StatusCompensating:
		if s.LeaseOwner != "" && now.Before(s.LeaseUntil) {
			return nil // a Compensate call (here or in a replica) is on it
		}
		return e.Compensate(ctx, s.ID)
	case s.Status == StatusRunning && !s.Deadline.IsZero() && now.After(s.Deadline):
		return e.expire(ctx, s, hooks)
	case s.Status == StatusRunning && resume && hooks.Resume != nil:
		if err := hooks.Resume(ctx, s); err != nil {
			return fmt.Errorf("saga %s: resume in phase %q: %w", s.ID, s.Phase, err)
		}
		return nil
	case s.Status.Finished() && now.Sub(s.UpdatedAt) > e.retention():
		return e.st.deleteAt(ctx, s.ID, s.Revision)
	}
	return nil
}

func (e *Engine) expire(ctx context.Context, s *Saga, hooks Hooks) error {
	e.log().Info("saga phase deadline passed", "saga", s.ID, "kind", s.Kind, "phase", s.Phase, "deadline", s.Deadline)
	if hooks.Expired != nil {
		if err := hooks.Expired(ctx, s); err != nil {
			return fmt.Errorf("saga %s: expired hook: %w", s.ID, err)
		}
	} else if _, err := e.st.Expire(ctx, s.ID); err != nil {
		return err
	}
	cur, err := e.st.Get(ctx, s.ID)
	if err != nil {
		return err
	}
	if cur.Status != StatusCompensating {
		return nil
	}
	return e.Compensate(ctx, s.ID)
}
