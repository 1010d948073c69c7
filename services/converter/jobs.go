package converter

import (
	"net/url"

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
	row.Command, row.Source, row.Dest = j.command, redact(j.source), j.dest
	return row
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
