// Package fakebuild is the job of the stand-in worker that package
// worker's tests and the conformance suite's own test run. The stand-in
// runs as the builder, whose `jobs` reply the bus checks against the
// builder's schema, so its phases and job rows are the builder's.
package fakebuild

import (
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// Status is a row of the builder's `jobs` reply.
type Status = schemas.BuilderJob

// Job is one build in flight, started now in phase pull of total bytes.
type Job struct {
	id        string
	imageID   int64
	kind      schemas.ContentKind
	delivered uint64
	started   time.Time
	jobs.Progress[schemas.BuilderPhase]
}

// New returns the job of command m building image imageID of kind.
func New(m *bus.Msg, imageID int64, kind schemas.ContentKind, total int64) *Job {
	j := &Job{id: m.Envelope.ID, imageID: imageID, kind: kind, delivered: m.Delivered, started: time.Now().UTC()}
	j.SetPhase("pull", total)
	return j
}

// Status is the job's row in the `jobs` reply.
func (j *Job) Status() Status {
	done, total := j.Bytes()
	return Status{ID: j.id, ImageID: j.imageID, Reference: "docker.io/library/alpine@sha256:" + strings.Repeat("ab", 32),
		Kind: j.kind, Phase: j.Phase(), BytesDone: done, BytesTotal: total,
		Dest: "s3://slipway-uploads/builds/1/disk.raw", Delivered: int64(j.delivered), StartedAt: j.started.Format(time.RFC3339Nano)}
}
