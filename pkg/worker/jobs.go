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
// type embeds jobs.Progress[P] (which gives Phase and Bytes) and adds what
// its row shows.
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
	e := &tracked[P, S]{job: j}
	t.set.Add(e)
	snapshot := func() (schemas.Progress, bool) { return progressOf(imageID, j) }
	stopReport := jobs.Report(ctx, w.bus, w.cfg.ProgressInterval, Token(imageID), snapshot, bus.CausedBy(m.Envelope))
	return func() {
		stopReport()
		t.set.Remove(e)
	}
}

// progressOf is j's progress event for image imageID; false before its
// first phase.
func progressOf[P ~string, S any](imageID int64, j Job[P, S]) (schemas.Progress, bool) {
	done, total := j.Bytes()
	phase := string(j.Phase())
	return schemas.Progress{ImageID: imageID, Phase: phase, BytesDone: done, BytesTotal: total}, phase != ""
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
