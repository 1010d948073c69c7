// Package jobs is the in-flight bookkeeping Slipway's workers share: a
// job's live phase and byte counters, written from the data path; the set
// of jobs a `jobs` query lists, and each one's row in it; and the
// reporter that turns them into `progress` events at most once per interval,
// so publishing never sits on the data path.
package jobs

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway/slipway/pkg/bus"
)

// Progress is a job's phase and byte counters. The data path updates them
// while the reporter and the jobs endpoint read them, hence atomics.
type Progress[P ~string] struct {
	phase       atomic.Value // P
	done, total atomic.Int64
}

// SetPhase starts phase, with total bytes when known (0 otherwise).
func (p *Progress[P]) SetPhase(phase P, total int64) {
	p.done.Store(0)
	p.total.Store(max(total, 0))
	p.phase.Store(phase)
}

// Phase is the current phase ("" before the first SetPhase).
func (p *Progress[P]) Phase() P {
	phase, _ := p.phase.Load().(P)
	return phase
}

// Update is the progress callback handed to fetch, convert, pull and
// upload: done bytes so far, and the total when the step learns it.
func (p *Progress[P]) Update(done, total int64) {
	p.done.Store(done)
	if total > 0 {
		p.total.Store(total)
	}
}

// Bytes returns the bytes done and the total (0 when unknown).
func (p *Progress[P]) Bytes() (done, total int64) { return p.done.Load(), p.total.Load() }

// Job is what every worker records of a job in flight besides its own
// fields: the command's ID, the image, the command's delivery count, when
// the job started, and its live Progress.
type Job[P ~string] struct {
	ID        string
	ImageID   int64
	Delivered uint64
	Started   time.Time
	Progress[P]
}

// Begin records that command m's job about imageID starts now, in phase
// first.
func (j *Job[P]) Begin(m *bus.Msg, imageID int64, first P) {
	j.ID, j.ImageID, j.Delivered, j.Started = m.Envelope.ID, imageID, m.Delivered, time.Now().UTC()
	j.SetPhase(first, 0)
}

// StartedAt is when the job started, as the jobs query shows it.
func (j *Job[P]) StartedAt() string { return j.Started.Format(time.RFC3339Nano) }

// Row is the `jobs` row S of job j with the fields every worker's row
// has set from j: ID, ImageID (when S has it: a kernel add has no image
// yet), Phase, BytesDone, BytesTotal, Delivered and StartedAt (RFC 3339).
// The service sets its own fields on the result. Each worker's row is its
// own type of the contract (schemas), alike in these fields by name and
// JSON only, hence reflection; a row type without one of them is a
// programming error and panics.
func Row[S any, P ~string](j *Job[P]) S {
	var row S
	v := reflect.ValueOf(&row).Elem()
	set := func(name string, x any) {
		f := v.FieldByName(name)
		if !f.IsValid() && name == "ImageID" {
			return
		}
		if !f.IsValid() || f.Type() != reflect.TypeOf(x) {
			panic(fmt.Sprintf("jobs.Row: %s has no field %s %T", v.Type(), name, x))
		}
		f.Set(reflect.ValueOf(x))
	}
	done, total := j.Bytes()
	set("ID", j.ID)
	set("ImageID", j.ImageID)
	set("Phase", j.Phase())
	set("BytesDone", done)
	set("BytesTotal", total)
	set("Delivered", int64(j.Delivered))
	set("StartedAt", j.StartedAt())
	return row
}

// Set holds the jobs in flight, in the order they started.
type Set[J any] struct {
	mu   sync.Mutex
	jobs []*J
}

// Add records a job that started.
func (s *Set[J]) Add(j *J) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = append(s.jobs, j)
}

// Remove forgets a job that ended.
func (s *Set[J]) Remove(j *J) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.jobs = slices.DeleteFunc(s.jobs, func(x *J) bool { return x == j })
}

// List returns status(j) for every job in flight, oldest first.
func List[J, S any](s *Set[J], status func(*J) S) []S {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]S, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, status(j))
	}
	return out
}

// Report publishes snapshot() as the bus's `progress` event for id every
// interval while it changes, until stop is called; snapshot reports false
// while there is nothing to say yet (no phase). Publishing errors are only
// logged: progress is a courtesy, never a reason to fail a job.
func Report[E comparable](ctx context.Context, b *bus.Bus, interval time.Duration, id string,
	snapshot func() (E, bool), opts ...bus.PubOption) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		var last E
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			e, ok := snapshot()
			if !ok || e == last {
				continue
			}
			last = e
			if _, err := b.Event(ctx, "progress", id, e, opts...); err != nil && ctx.Err() == nil {
				b.Logger().Debug("progress event not published", "id", id, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}
