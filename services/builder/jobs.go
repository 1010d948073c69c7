package builder

import (
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs endpoint reports it: the
// contract's row.
type JobStatus = schemas.BuilderJob

// job is the live state of one build.
type job struct {
	reference, url, kind, dest string

	jobs.Job[schemas.BuilderPhase]
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() JobStatus {
	row := jobs.Row[JobStatus](&j.Job)
	row.Reference, row.URL, row.Kind, row.Dest = j.reference, j.url, schemas.ContentKind(j.kind), j.dest
	return row
}
