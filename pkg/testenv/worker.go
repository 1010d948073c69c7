package testenv

import "github.com/slipway/slipway/pkg/blob"

// What the workers' tests share: the buckets of a default deployment,
// which a worker writes to unless told otherwise, and a saga to send
// their commands in.
const (
	Uploads = blob.DefaultUploadBucket
	Images  = blob.DefaultDatastoreBucket
	// Saga is the correlation (saga) ID of a worker test's commands.
	Saga = "0b7a3c1e-2f4d-4e5a-9b6c-7d8e9f0a1b2c"
)

// Dest is where a worker accepts to write name for image id in Saga: the
// image's attempt prefix in Images (images/<id>/<saga>/<name>).
func Dest(id int64, name string) string {
	return blob.URL(Images, blob.AttemptPrefix(id, Saga)+name)
}
