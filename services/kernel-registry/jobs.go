package kernelregistry

import (
	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// job is the live state of one add: its phase and byte counters, which the
// tracker reports as `progress` events naming the source (no image exists
// yet), and its row in the `jobs` reply.
type job struct {
	jobs.Job[schemas.KernelRegistryPhase]
	source string
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() schemas.KernelRegistryJob {
	row := jobs.Row[schemas.KernelRegistryJob](&j.Job)
	row.Source = j.source
	return row
}
