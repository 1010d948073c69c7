package converter

import (
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/jobs"
	"github.com/slipway/slipway/schemas"
)

// TestJobStatusMatchesSchema: what the jobs query answers for a job in
// flight matches its reply schema, a source with credentials and a query
// string included (it is shown redacted).
func TestJobStatusMatchesSchema(t *testing.T) {
	dest := "s3://slipway-default/images/7/0b7a3c1e-2f4d-4e5a-9b6c-7d8e9f0a1b2c/disk.raw"
	for _, j := range []*job{
		{command: "import", dest: dest, source: "https://user:secret@dl.example.org/disk.raw.gz?X-Amz-Signature=abc",
			Job: jobs.Job[schemas.ConverterPhase]{ID: "88c1d26c-212a-4310-a782-bb57b417e141", ImageID: 7, Delivered: 1, Started: time.Now().UTC()}},
		{command: "import", dest: dest, source: "s3://slipway-uploads/uploads/7/disk.qcow2",
			Job: jobs.Job[schemas.ConverterPhase]{ID: "88c1d26c-212a-4310-a782-bb57b417e142", ImageID: 7, Delivered: 3, Started: time.Now().UTC()}},
		{command: "create-blank", dest: dest,
			Job: jobs.Job[schemas.ConverterPhase]{ID: "88c1d26c-212a-4310-a782-bb57b417e143", ImageID: 0, Delivered: 1, Started: time.Now().UTC()}},
	} {
		j.SetPhase(schemas.ConverterPhaseFetch, 1064259)
		j.Update(532129, 0)
		reply := map[string]any{"jobs": []JobStatus{j.Status()}}
		if err := schemas.ValidateValue(schemas.KindReply, Name, "jobs", reply); err != nil {
			t.Errorf("%s %s: %v", j.command, j.source, err)
		}
	}
}
