package worker

import (
	"context"
	"fmt"
	"strconv"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// Job is one command being handled, as the skeleton sees it: its phase
// and byte counters, which the tracker reports as the one progress shape
// (schemas.Progress), and its row S in the `jobs` reply. A service's job
// type embeds jobs.Job[P] (which gives Phase and Bytes), adds what its row
// shows, and makes the row with jobs.Row.
type Job[P ~string, S any] interface {
	Phase() P
	Bytes() (done, total int64)
	Status() S
}

// Tracker is a worker's set of jobs in flight of one type; its zero value
// is ready. Set it as Spec.Jobs to serve them on the `jobs` endpoint.
type Tracker[P ~string, S any] struct {
	set jobs.Set[tracked[P, S]]
}

type tracked[P ~string, S any] struct{ job Job[P, S] }

// Start records j, the job of command m for image imageID, and publishes
// its progress as `progress` events about the image (caused by m) at most
// once per the worker's ProgressInterval. stop ends the reports and
// forgets the job.
func (t *Tracker[P, S]) Start(ctx context.Context, w *Worker, m *bus.Msg, imageID int64, j Job[P, S]) (stop func()) {
	return t.start(ctx, w, m, Token(imageID), schemas.Progress{ImageID: &imageID}, j)
}

// StartSource is Start for a job that makes no image until it ends (a
// kernel add): its progress names source, about the command
// (CommandToken).
func (t *Tracker[P, S]) StartSource(ctx context.Context, w *Worker, m *bus.Msg, source string, j Job[P, S]) (stop func()) {
	return t.start(ctx, w, m, CommandToken(m), schemas.Progress{Source: source}, j)
}

func (t *Tracker[P, S]) start(ctx context.Context, w *Worker, m *bus.Msg, token string, about schemas.Progress, j Job[P, S]) (stop func()) {
	e := &tracked[P, S]{job: j}
	t.set.Add(e)
	snapshot := func() (schemas.Progress, bool) { return progressOf(about, j) }
	stopReport := jobs.Report(ctx, w.bus, w.cfg.ProgressInterval, token, snapshot, bus.CausedBy(m.Envelope))
	return func() {
		stopReport()
		t.set.Remove(e)
	}
}

// progressOf is j's progress event, about what p names; false before its
// first phase.
func progressOf[P ~string, S any](p schemas.Progress, j Job[P, S]) (schemas.Progress, bool) {
	p.BytesDone, p.BytesTotal = j.Bytes()
	p.Phase = string(j.Phase())
	return p, p.Phase != ""
}

// Statuses lists the jobs in flight, oldest first.
func (t *Tracker[P, S]) Statuses() []S {
	return jobs.List(&t.set, func(e *tracked[P, S]) S { return e.job.Status() })
}

// List is Statuses for the `jobs` endpoint.
func (t *Tracker[P, S]) List() any { return t.Statuses() }

// Token is the event id token of a numeric ID (an image's).
func Token(id int64) string { return strconv.FormatInt(id, 10) }

// CommandToken is the event id token of a command that names nothing the
// events could be about (its JSON is broken): cmd-<stream sequence>.
func CommandToken(m *bus.Msg) string { return fmt.Sprintf("cmd-%d", m.StreamSeq) }
