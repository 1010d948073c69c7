package builder

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs endpoint reports it.
type JobStatus struct {
	ID         string    `json:"id"` // ce-id of the command
	ImageID    int64     `json:"image_id"`
	Reference  string    `json:"reference"`
	Kind       string    `json:"kind"`
	Phase      string    `json:"phase"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	Dest       string    `json:"dest"`
	Delivered  uint64    `json:"delivered"`
	StartedAt  time.Time `json:"started_at"`
}

// job is the live state of one build. Phase and byte counters are
// updated from the data path and read by the reporter and the jobs
// endpoint, hence atomics.
type job struct {
	id, reference, kind, dest string
	imageID                   int64
	delivered                 uint64
	started                   time.Time

	phase       atomic.Value // schemas.BuilderPhase
	done, total atomic.Int64
}

func (j *job) setPhase(p schemas.BuilderPhase, total int64) {
	j.done.Store(0)
	j.total.Store(max(total, 0))
	j.phase.Store(p)
}

func (j *job) currentPhase() schemas.BuilderPhase {
	p, _ := j.phase.Load().(schemas.BuilderPhase)
	return p
}

// progress is the callback handed to pull, flatten and upload.
func (j *job) progress(done, total int64) {
	j.done.Store(done)
	if total > 0 {
		j.total.Store(total)
	}
}

func (j *job) snapshot() schemas.BuilderProgress {
	return schemas.BuilderProgress{ImageID: j.imageID, Phase: j.currentPhase(), BytesDone: j.done.Load(), BytesTotal: j.total.Load()}
}

func (j *job) status() JobStatus {
	p := j.snapshot()
	return JobStatus{ID: j.id, ImageID: j.imageID, Reference: j.reference, Kind: j.kind, Phase: string(p.Phase),
		BytesDone: p.BytesDone, BytesTotal: p.BytesTotal, Dest: j.dest, Delivered: j.delivered, StartedAt: j.started}
}

// jobs tracks the jobs in flight.
type jobs struct {
	mu sync.Mutex
	m  map[*job]struct{}
}

func (js *jobs) add(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	if js.m == nil {
		js.m = map[*job]struct{}{}
	}
	js.m[j] = struct{}{}
}

func (js *jobs) remove(j *job) {
	js.mu.Lock()
	defer js.mu.Unlock()
	delete(js.m, j)
}

func (js *jobs) list() []JobStatus {
	js.mu.Lock()
	out := make([]JobStatus, 0, len(js.m))
	for j := range js.m {
		out = append(out, j.status())
	}
	js.mu.Unlock()
	sort.Slice(out, func(a, b int) bool { return out[a].StartedAt.Before(out[b].StartedAt) })
	return out
}

// report publishes j's progress every interval while it changes, until
// stopped: at most one progress event per interval per job, and none on
// the data path.
func (s *Service) report(ctx context.Context, j *job, opts ...bus.PubOption) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(s.cfg.ProgressInterval)
		defer t.Stop()
		var last schemas.BuilderProgress
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p := j.snapshot()
			if p == last || p.Phase == "" {
				continue
			}
			last = p
			if _, err := s.bus.Event(ctx, "progress", idToken(j.imageID), p, opts...); err != nil && ctx.Err() == nil {
				s.log.Debug("progress event not published", "image_id", j.imageID, "err", err)
			}
		}
	}()
	return func() { cancel(); <-done }
}
