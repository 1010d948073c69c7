package saga

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/slipway/slipway/pkg/kvstore"
)

// Phase names a step of a workflow, e.g. "fetch", "convert", "commit".
type Phase string

// Status is where a saga stands as a whole.
type Status string

// Saga statuses. A saga starts running, and ends succeeded or failed; a
// failed saga passes through compensating while its phases are undone.
const (
	StatusRunning      Status = "running"
	StatusSucceeded    Status = "succeeded"
	StatusFailed       Status = "failed"
	StatusCompensating Status = "compensating"
)

// Finished reports whether the status is final (nothing left to do).
func (s Status) Finished() bool { return s == StatusSucceeded || s == StatusFailed }

// Errors returned by the store and the engine. They are wrapped with the
// saga ID and details; test them with errors.Is.
var (
	// ErrNotFound: no saga with this ID.
	ErrNotFound = errors.New("saga not found")
	// ErrExists: Create found the ID taken; a caller starting a workflow
	// treats it as "already started".
	ErrExists = errors.New("saga already exists")
	// ErrWrongPhase: Advance found the saga in another phase (or no longer
	// running), typically because a duplicate delivery already advanced it.
	ErrWrongPhase = errors.New("saga is not in the expected phase")
	// ErrNotRunning: the saga has succeeded, failed or is compensating.
	ErrNotRunning = errors.New("saga is not running")
	// ErrNoChange, returned by an Update function, means "nothing to
	// write": Update returns the current saga and no error. It is
	// kvstore's, whose loop Update runs.
	ErrNoChange = kvstore.ErrNoChange
	// ErrBusy: another Compensate call holds the saga's lease.
	ErrBusy = errors.New("saga is being compensated elsewhere")
	// ErrUnknownKind: no Definition registered for the saga's kind.
	ErrUnknownKind = errors.New("unknown saga kind")
)

// Step is one entry of a saga's history.
type Step struct {
	Phase  Phase     `json:"phase"`
	Status Status    `json:"status"`
	At     time.Time `json:"at"`
	Note   string    `json:"note,omitempty"`
}

// Saga is the persisted state of one workflow run.
type Saga struct {
	ID       string    `json:"id"`
	Kind     string    `json:"kind"`
	Subject  string    `json:"subject,omitempty"` // what the workflow is about, e.g. the image ID
	Phase    Phase     `json:"phase"`
	Status   Status    `json:"status"`
	Deadline time.Time `json:"deadline,omitzero"`  // zero: the phase has no deadline
	Attempts int       `json:"attempts,omitempty"` // for the owner (e.g. retries of a step); saga never changes it
	Error    string    `json:"error,omitempty"`
	// Owned lists resources (s3:// URLs) written so far, so compensation
	// knows what to delete.
	Owned []string `json:"owned,omitempty"`
	// Data is workflow-specific state; see Decode and SetData.
	Data    json.RawMessage `json:"data,omitempty"`
	History []Step          `json:"history,omitempty"`
	// Compensated lists the phases whose compensation already ran, so a
	// retried compensation skips them.
	Compensated []Phase `json:"compensated,omitempty"`
	// LeaseOwner and LeaseUntil mark the Compensate call working on the
	// saga, so two calls (in one process or in replicas) do not run the
	// same compensations side by side.
	LeaseOwner string    `json:"lease_owner,omitempty"`
	LeaseUntil time.Time `json:"lease_until,omitzero"`

	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	// Revision is the KV revision the saga was read at (not stored).
	Revision uint64 `json:"-"`
}

// Decode unmarshals Data into v. Empty data leaves v untouched.
func (s *Saga) Decode(v any) error {
	if len(s.Data) == 0 {
		return nil
	}
	if err := json.Unmarshal(s.Data, v); err != nil {
		return fmt.Errorf("saga %s: decode data: %w", s.ID, err)
	}
	return nil
}

// SetData marshals v into Data.
func (s *Saga) SetData(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("saga %s: encode data: %w", s.ID, err)
	}
	s.Data = b
	return nil
}

// Visited returns the distinct phases of the history in the order they were
// first entered.
func (s *Saga) Visited() []Phase {
	var out []Phase
	for _, st := range s.History {
		if st.Phase != "" && !slices.Contains(out, st.Phase) {
			out = append(out, st.Phase)
		}
	}
	if s.Phase != "" && !slices.Contains(out, s.Phase) {
		out = append(out, s.Phase)
	}
	return out
}

// PhaseDuration is how long the current phase was given: from entering it
// to its deadline (zero when it has no deadline).
func (s *Saga) PhaseDuration() time.Duration {
	if s.Deadline.IsZero() {
		return 0
	}
	for i := len(s.History) - 1; i >= 0; i-- {
		if s.History[i].Phase == s.Phase && s.History[i].Status == StatusRunning {
			return s.Deadline.Sub(s.History[i].At)
		}
	}
	return s.Deadline.Sub(s.CreatedAt)
}

func (s *Saga) record(phase Phase, status Status, now time.Time, note string) {
	s.History = append(s.History, Step{Phase: phase, Status: status, At: now, Note: note})
}

func (s *Saga) clone() *Saga {
	c := *s
	c.Owned = slices.Clone(s.Owned)
	c.Data = slices.Clone(s.Data)
	c.History = slices.Clone(s.History)
	c.Compensated = slices.Clone(s.Compensated)
	return &c
}

// PhaseError is the detail behind ErrWrongPhase: what Advance expected and
// what it found.
type PhaseError struct {
	ID     string
	Want   Phase
	Actual Phase
	Status Status
}

func (e *PhaseError) Error() string {
	if e.Status != StatusRunning {
		return fmt.Sprintf("saga %s: cannot leave phase %q: saga is %s (in phase %q)", e.ID, e.Want, e.Status, e.Actual)
	}
	return fmt.Sprintf("saga %s: cannot leave phase %q: saga is in phase %q", e.ID, e.Want, e.Actual)
}

// Is makes errors.Is(err, ErrWrongPhase) true, and ErrNotRunning too when
// the saga is no longer running.
func (e *PhaseError) Is(target error) bool {
	return target == ErrWrongPhase || (target == ErrNotRunning && e.Status != StatusRunning)
}

// PhaseSpec describes one phase of a workflow.
type PhaseSpec struct {
	// Deadline is how long the phase may take; zero means no deadline.
	// The engine does not apply it by itself: pass it to Advance, or use
	// Definition.DeadlineOf.
	Deadline time.Duration
	// Compensate undoes what the phase did. It must be idempotent: after a
	// crash it may run again. It gets a copy of the saga; changes to it are
	// not stored.
	Compensate func(ctx context.Context, s *Saga) error
}

// Definition describes a workflow kind.
type Definition struct {
	Kind   string
	Phases map[Phase]PhaseSpec
}

// DeadlineOf returns the deadline of phase p (zero if unknown).
func (d Definition) DeadlineOf(p Phase) time.Duration { return d.Phases[p].Deadline }
