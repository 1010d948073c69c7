package s3iam

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/slipway/slipway/pkg/blob"
)

// Temporary are keys an STS issued: they expire, and they allow no more
// than both the parent's policy and the session policy.
type Temporary struct {
	AccessKey    string
	SecretKey    string
	SessionToken string
	Expiration   time.Time
}

// Bounds of a temporary key's life that MinIO's AssumeRole accepts.
const (
	MinDuration = 15 * time.Minute
	MaxDuration = 12 * time.Hour
)

// AssumeRole asks the STS of the server parent reaches for temporary keys
// that act as parent (its own MinIO user) limited to session. ttl is
// clamped to [MinDuration, MaxDuration].
func AssumeRole(ctx context.Context, parent blob.Config, session Policy, ttl time.Duration) (Temporary, error) {
	doc, err := session.JSON()
	if err != nil {
		return Temporary{}, err
	}
	base, err := parent.EndpointURL()
	if err != nil {
		return Temporary{}, err
	}
	ttl = min(max(ttl, MinDuration), MaxDuration)
	creds, err := credentials.NewSTSAssumeRole(base, credentials.STSAssumeRoleOptions{
		AccessKey:       parent.AccessKey,
		SecretKey:       parent.SecretKey,
		SessionToken:    parent.SessionToken,
		Policy:          string(doc),
		Location:        parent.Region,
		DurationSeconds: int(ttl / time.Second),
	})
	if err != nil {
		return Temporary{}, fmt.Errorf("s3iam: assume role: %w", err)
	}
	client, err := blob.HTTPClient(parent, 30*time.Second)
	if err != nil {
		return Temporary{}, err
	}
	v, err := creds.GetWithContext(&credentials.CredContext{Client: client, Context: ctx})
	if err != nil {
		return Temporary{}, fmt.Errorf("s3iam: assume role at %s: %w", base, err)
	}
	return Temporary{AccessKey: v.AccessKeyID, SecretKey: v.SecretAccessKey, SessionToken: v.SessionToken, Expiration: v.Expiration}, nil
}

// Config is cfg acting with the temporary keys.
func (t Temporary) Config(cfg blob.Config) blob.Config {
	cfg.AccessKey, cfg.SecretKey, cfg.SessionToken = t.AccessKey, t.SecretKey, t.SessionToken
	return cfg
}

// ReadObject is the session policy that reads exactly one object.
func ReadObject(bucket, key string) (Policy, error) {
	r, err := ObjectARN(bucket, key)
	if err != nil {
		return Policy{}, err
	}
	return Allow(Statement{Effect: "Allow", Action: ActRead, Resource: []Resource{r}}), nil
}

// UploadPrefixes is the session policy that writes (in one PUT or in
// parts) and deletes only under <segment>/<user>/ of bucket for each
// segment: where a user stages files (the CLI removes an upload the
// catalog refused). user must be a name CheckSegment accepts.
func UploadPrefixes(bucket, user string, segments ...string) (Policy, error) {
	var res []Resource
	for _, seg := range segments {
		r, err := ObjectsARN(bucket, seg, user)
		if err != nil {
			return Policy{}, err
		}
		res = append(res, r)
	}
	return Allow(Statement{Effect: "Allow", Action: append(slices.Clone(ActWrite), ActDelete...), Resource: res}), nil
}

// UserUploads is the session policy of a user's uploads: uploads/<user>/
// (image files) and kernels/<user>/ (kernel uploads) of the upload bucket.
func UserUploads(l Layout, user string) (Policy, error) {
	return UploadPrefixes(l.UploadBucket, user, segUploads, segKernels)
}
