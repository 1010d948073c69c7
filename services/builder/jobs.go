package builder

import (
	"time"

	"github.com/slipway/slipway/pkg/jobs"
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

// job is the live state of one build.
type job struct {
	id, reference, kind, dest string
	imageID                   int64
	delivered                 uint64
	started                   time.Time

	jobs.Progress[schemas.BuilderPhase]
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() JobStatus {
	done, total := j.Bytes()
	return JobStatus{ID: j.id, ImageID: j.imageID, Reference: j.reference, Kind: j.kind, Phase: string(j.Phase()),
		BytesDone: done, BytesTotal: total, Dest: j.dest, Delivered: j.delivered, StartedAt: j.started}
}
