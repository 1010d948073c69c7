package worker

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
)

// Job is one command being handled, as the skeleton sees it: its progress
// event E (false before its first phase) and its row S in the `jobs`
// reply. A service's job type embeds jobs.Progress and adds what it shows.
type Job[E comparable, S any] interface {
	Snapshot() (E, bool)
	Status() S
}

// Tracker is a worker's set of jobs in flight of one type; its zero value
// is ready. Set it as Spec.Jobs to serve them on the `jobs` endpoint.
type Tracker[E comparable, S any] struct {
	set jobs.Set[tracked[E, S]]
}

type tracked[E comparable, S any] struct{ job Job[E, S] }

// Start records j, the job of command m, and publishes its progress as
// `progress` events about id (caused by m) at most once per the worker's
// ProgressInterval. stop ends the reports and forgets the job.
func (t *Tracker[E, S]) Start(ctx context.Context, w *Worker, m *bus.Msg, id string, j Job[E, S]) (stop func()) {
	e := &tracked[E, S]{job: j}
	t.set.Add(e)
	stopReport := jobs.Report(ctx, w.bus, w.cfg.ProgressInterval, id, j.Snapshot, bus.CausedBy(m.Envelope))
	return func() {
		stopReport()
		t.set.Remove(e)
	}
}

// Statuses lists the jobs in flight, oldest first.
func (t *Tracker[E, S]) Statuses() []S {
	return jobs.List(&t.set, func(e *tracked[E, S]) S { return e.job.Status() })
}

// List is Statuses for the `jobs` endpoint.
func (t *Tracker[E, S]) List() any { return t.Statuses() }

// Token is the event id token of a numeric ID (an image's).
func Token(id int64) string { return strconv.FormatInt(id, 10) }

// CommandToken is the event id token of a command that names nothing the
// events could be about (its JSON is broken): cmd-<stream sequence>.
func CommandToken(m *bus.Msg) string { return fmt.Sprintf("cmd-%d", m.StreamSeq) }

// JobOf is what every job keeps of its command m for the `jobs` reply: the
// command's ce-id, its delivery count and when this delivery started; and
// the job's progress. A service's job type embeds it.
type JobOf[P ~string] struct {
	ID        string
	Delivered uint64
	Started   time.Time
	jobs.Progress[P]
}

// NewJob starts the bookkeeping of command m's job.
func NewJob[P ~string](m *bus.Msg) JobOf[P] {
	return JobOf[P]{ID: m.Envelope.ID, Delivered: m.Delivered, Started: time.Now().UTC()}
}

// StartedAt is Started as the `jobs` reply says it (RFC 3339).
func (j *JobOf[P]) StartedAt() string { return j.Started.Format(time.RFC3339Nano) }
