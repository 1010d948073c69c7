package cryptoluks

import (
	"context"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs query reports it: the
// contract's row (schemas/defs.json LuksJob).
type JobStatus = schemas.LuksJob

// job is the live state of one command that moves an image's bytes.
type job struct {
	id, command string
	imageID     int64
	delivered   uint64
	started     time.Time

	jobs.Progress[schemas.LuksPhase]
}

// Status is the job as the jobs query shows it.
func (j *job) Status() JobStatus {
	done, total := j.Bytes()
	return JobStatus{ID: j.id, Command: j.command, ImageID: j.imageID, Phase: j.Phase(), BytesDone: done, BytesTotal: total,
		Delivered: int64(j.delivered), StartedAt: j.started.Format(time.RFC3339Nano)}
}

// startJob registers a job for m and reports its progress until stop.
func (s *Service) startJob(ctx context.Context, m *bus.Msg, imageID int64, first schemas.LuksPhase) (*job, func()) {
	j := &job{id: m.Envelope.ID, command: m.Name, imageID: imageID, delivered: m.Delivered, started: time.Now().UTC()}
	j.SetPhase(first, 0)
	return j, s.jobs.Start(ctx, s.w, m, imageID, j)
}
