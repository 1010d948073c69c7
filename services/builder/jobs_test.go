package builder

import (
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// TestJobStatusMatchesSchema: what the jobs query answers for a build in
// flight matches its reply schema (the service tests only see it empty).
func TestJobStatusMatchesSchema(t *testing.T) {
	for _, kind := range schemas.ContentKindValues() {
		j := &job{kind: string(kind),
			reference: "docker.io/library/alpine@sha256:beefdbd8a1da6d2915566fde36db9db0b524eb737fc57cd1367effd16dc0d06d",
			dest:      "s3://slipway-uploads/builds/12/4f3e2d1c-0b9a-4877-8665-544332211009/disk.raw",
			Job:       jobs.Job[schemas.BuilderPhase]{ID: "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d", ImageID: 12, Delivered: 1, Started: time.Now().UTC()}}
		j.SetPhase(schemas.BuilderPhaseFlatten, 3623807)
		j.Update(3145728, 0)
		reply := map[string]any{"jobs": []JobStatus{j.Status()}}
		if err := schemas.ValidateValue(schemas.KindReply, Name, "jobs", reply); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
	}
}
