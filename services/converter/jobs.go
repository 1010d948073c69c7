package converter

import (
	"net/url"
	"time"

	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// JobStatus is one in-flight job as the jobs endpoint reports it: the
// contract's row.
type JobStatus = schemas.ConverterJob

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
	return JobStatus{ID: j.id, Command: j.command, ImageID: j.imageID, Phase: j.Phase(),
		BytesDone: done, BytesTotal: total, Source: redact(j.source), Dest: j.dest,
		Delivered: int64(j.delivered), StartedAt: j.started.Format(time.RFC3339Nano)}
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
