package cryptoluks

import (
	"context"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs query reports it: the
// contract's row (schemas/defs.json LuksJob).
type JobStatus = schemas.LuksJob

// job is the live state of one command that moves an image's bytes.
type job struct {
	command string

	jobs.Job[schemas.LuksPhase]
}

// Status is the job as the jobs query shows it.
func (j *job) Status() JobStatus {
	row := jobs.Row[JobStatus](&j.Job)
	row.Command = j.command
	return row
}

// startJob registers a job for m and reports its progress until stop.
func (s *Service) startJob(ctx context.Context, m *bus.Msg, imageID int64, first schemas.LuksPhase) (*job, func()) {
	j := &job{command: m.Name}
	j.Begin(m, imageID, first)
	return j, s.jobs.Start(ctx, s.w, m, imageID, j)
}
