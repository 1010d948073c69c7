package cryptoluks

import (
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// TestJobStatusMatchesSchema: what the jobs query answers for a job in
// flight matches its reply schema, for every command that runs a job (the
// service tests only ever see an empty list).
func TestJobStatusMatchesSchema(t *testing.T) {
	for _, c := range []struct {
		command string
		phase   schemas.LuksPhase
	}{{"encrypt", schemas.LuksPhaseDownload}, {"create", schemas.LuksPhaseCreate}, {"slot-add", schemas.LuksPhaseAmend},
		{"slot-remove", schemas.LuksPhaseUpload}, {"rotate", schemas.LuksPhaseEncrypt}} {
		j := &job{command: c.command, Job: jobs.Job[schemas.LuksPhase]{ID: "3e4f5a6b-7c8d-4e9f-a0b1-c2d3e4f5a6b7", ImageID: 8, Delivered: 1, Started: time.Now().UTC()}}
		j.SetPhase(c.phase, 209715200)
		j.Update(104857600, 0)
		reply := map[string]any{"jobs": []JobStatus{j.Status()}}
		if err := schemas.ValidateValue(schemas.KindReply, Name, "jobs", reply); err != nil {
			t.Errorf("%s: %v", c.command, err)
		}
	}
}
