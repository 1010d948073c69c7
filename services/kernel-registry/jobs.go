package kernelregistry

import (
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
)

// job is the live state of one add: its `progress` events (about the
// command: no image exists yet) and its row in the `jobs` reply.
type job struct {
	worker.JobOf[schemas.KernelRegistryPhase]
	source string
}

// Snapshot is the job's progress event; false before its first phase.
func (j *job) Snapshot() (schemas.KernelRegistryProgress, bool) {
	done, total := j.Bytes()
	return schemas.KernelRegistryProgress{Source: j.source, Phase: j.Phase(), BytesDone: done, BytesTotal: total}, j.Phase() != ""
}

// Status is the job as the jobs endpoint shows it.
func (j *job) Status() schemas.KernelRegistryJob {
	p, _ := j.Snapshot()
	return schemas.KernelRegistryJob{ID: j.ID, Source: j.source, Phase: p.Phase, BytesDone: p.BytesDone,
		BytesTotal: p.BytesTotal, Delivered: int64(j.Delivered), StartedAt: j.StartedAt()}
}
