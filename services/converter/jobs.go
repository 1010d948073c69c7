package converter

import (
	"net/url"
	"time"

	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs endpoint reports it.
type JobStatus struct {
	ID         string    `json:"id"` // ce-id of the command
	Command    string    `json:"command"`
	ImageID    int64     `json:"image_id"`
	Phase      string    `json:"phase"`
	BytesDone  int64     `json:"bytes_done"`
	BytesTotal int64     `json:"bytes_total"`
	Source     string    `json:"source,omitempty"`
	Dest       string    `json:"dest"`
	Delivered  uint64    `json:"delivered"`
	StartedAt  time.Time `json:"started_at"`
}

// job is the live state of one command being handled.
type job struct {
	id, command, source, dest string
	imageID                   int64
	delivered                 uint64
	started                   time.Time

	jobs.Progress[schemas.ConverterPhase]
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() JobStatus {
	done, total := j.Bytes()
	return JobStatus{ID: j.id, Command: j.command, ImageID: j.imageID, Phase: string(j.Phase()),
		BytesDone: done, BytesTotal: total, Source: redact(j.source), Dest: j.dest,
		Delivered: j.delivered, StartedAt: j.started}
}

// redact drops credentials and query strings (presigned URLs carry
// signatures) from a source before showing it.
func redact(src string) string {
	u, err := url.Parse(src)
	if err != nil || u.Scheme == "s3" {
		return src
	}
	u.User, u.RawQuery, u.Fragment = nil, "", ""
	return u.String()
}
