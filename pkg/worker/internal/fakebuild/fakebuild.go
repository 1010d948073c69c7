// Package fakebuild is the job of the stand-in worker that package
// worker's tests and the conformance suite's own test run. The stand-in
// runs as the builder, whose `jobs` reply the bus checks against the
// builder's schema, so its phases and job rows are the builder's.
package fakebuild

import (
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// Status is a row of the builder's `jobs` reply.
type Status = schemas.BuilderJob

// Job is one build in flight, started now in phase pull of total bytes.
type Job struct {
	kind schemas.ContentKind
	jobs.Job[schemas.BuilderPhase]
}

// New returns the job of command m building image imageID of kind.
func New(m *bus.Msg, imageID int64, kind schemas.ContentKind, total int64) *Job {
	j := &Job{kind: kind}
	j.Begin(m, imageID, schemas.BuilderPhasePull)
	j.Update(0, total)
	return j
}

// Status is the job's row in the `jobs` reply.
func (j *Job) Status() Status {
	row := jobs.Row[Status](&j.Job)
	row.Reference, row.Kind = "docker.io/library/alpine@sha256:"+strings.Repeat("ab", 32), j.kind
	row.Dest = "s3://slipway-uploads/builds/1/disk.raw"
	return row
}
