package kernelregistry

import (
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
)

// job is the live state of one add: its phase and byte counters, which the
// tracker reports as `progress` events naming the source (no image exists
// yet), and its row in the `jobs` reply.
type job struct {
	worker.JobOf[schemas.KernelRegistryPhase]
	source string
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() schemas.KernelRegistryJob {
	done, total := j.Bytes()
	return schemas.KernelRegistryJob{ID: j.ID, Source: j.source, Phase: j.Phase(), BytesDone: done,
		BytesTotal: total, Delivered: int64(j.Delivered), StartedAt: j.StartedAt()}
}
