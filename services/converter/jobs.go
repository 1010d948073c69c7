package converter

import (
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs endpoint reports it: the
// contract's row.
type JobStatus = schemas.ConverterJob

// job is the live state of one command being handled.
type job struct {
	command, source, dest string

	jobs.Job[schemas.ConverterPhase]
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() JobStatus {
	row := jobs.Row[JobStatus](&j.Job)
	row.Command, row.Source, row.Dest = j.command, fetch.Redact(j.source), j.dest
	return row
}
