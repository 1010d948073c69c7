package catalog

// Users' S3 access without service keys: a presigned GET URL of an
// image's blob (blob-url), temporary keys that read that one blob
// (blob-creds), and temporary keys that write only under the asker's own
// staging prefixes (upload-creds). The catalog signs and asks MinIO's STS
// with its own S3 identity; a session policy (package s3iam) narrows what
// it hands out to the one object or the user's prefixes. Who asks is the
// authenticated sender (askedBy), and the image check is the shared one
// (mayUse).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/schemas"
)

// defaultS3Grant is how long a URL or temporary keys stay valid unless
// the asker says otherwise.
const defaultS3Grant = time.Hour

// grant is the validity a request asks for (seconds; 0 means the default).
func grant(seconds int64) time.Duration {
	if seconds <= 0 {
		return defaultS3Grant
	}
	return time.Duration(seconds) * time.Second
}

// mayUse is the image id if the asker may use it (what reading its blob
// takes, as `oneimage show` does), with its blob's bucket and key.
func (s *Service) mayUse(ctx context.Context, id int64, op string) (img *schemas.Image, bucket, key string, err error) {
	c, err := s.askedBy(ctx)
	if err != nil {
		return nil, "", "", err
	}
	img, _, err = s.images.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, "", "", bus.NotFound(fmt.Errorf("image %d does not exist", id))
	}
	if err != nil {
		return nil, "", "", err
	}
	if err := c.may(img, acl.Use, op); err != nil {
		return nil, "", "", bus.Forbidden(err)
	}
	if img.Source == "" {
		return nil, "", "", bus.Invalid(fmt.Errorf("image %d has no blob (state %s): nothing to read yet", id, img.State))
	}
	bucket, key, err = blob.ParseURL(img.Source)
	if err != nil {
		return nil, "", "", fmt.Errorf("image %d: recorded source: %w", id, err)
	}
	return img, bucket, key, nil
}

// publicS3 is the catalog's S3 configuration for the server that holds
// bucket as users reach it (the host a presigned URL names must be the
// one the user sends it to): a remote's public_endpoint, or for the
// default server SLIPWAY_S3_PUBLIC_ENDPOINT, when set.
func (s *Service) publicS3(bucket string) blob.Config {
	cfg := s.blobs.ConfigFor(bucket)
	cfg.Remotes = nil
	if _, remote := s.blobs.RemoteOf(bucket); remote {
		cfg.Endpoint = cmp.Or(cfg.PublicEndpoint, cfg.Endpoint)
	} else if s.cfg.S3PublicEndpoint != "" {
		cfg.Endpoint = s.cfg.S3PublicEndpoint
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1" // MinIO's; presigning then needs no round trip
	}
	return cfg
}

// endpointURL is cfg's endpoint as a URL for aws --endpoint-url and mc.
func endpointURL(cfg blob.Config) string {
	if strings.Contains(cfg.Endpoint, "://") {
		return strings.TrimSuffix(cfg.Endpoint, "/")
	}
	if cfg.Secure {
		return "https://" + cfg.Endpoint
	}
	return "http://" + cfg.Endpoint
}

func (s *Service) queryBlobURL(ctx context.Context, r schemas.CatalogBlobURLRequest) (schemas.CatalogBlobURLReply, error) {
	img, bucket, key, err := s.mayUse(ctx, r.ID, "read the blob of")
	if err != nil {
		return schemas.CatalogBlobURLReply{}, err
	}
	signer, err := blob.New(s.publicS3(bucket))
	if err != nil {
		return schemas.CatalogBlobURLReply{}, err
	}
	ttl := grant(r.ExpiresS)
	u, err := signer.PresignGet(ctx, bucket, key, ttl)
	if err != nil {
		return schemas.CatalogBlobURLReply{}, err
	}
	return schemas.CatalogBlobURLReply{URL: u.String(), Source: img.Source, ExpiresAt: time.Now().Add(ttl).UTC().Format(time.RFC3339)}, nil
}

func (s *Service) queryBlobCreds(ctx context.Context, r schemas.CatalogBlobCredsRequest) (schemas.S3TemporaryCredentials, error) {
	_, bucket, key, err := s.mayUse(ctx, r.ID, "read the blob of")
	if err != nil {
		return schemas.S3TemporaryCredentials{}, err
	}
	p, err := s3iam.ReadObject(bucket, key)
	if err != nil {
		return schemas.S3TemporaryCredentials{}, err
	}
	out, err := s.temporary(ctx, bucket, p, r.DurationS)
	out.Bucket, out.Key = bucket, key
	return out, err
}

// uploader is the user who asks for an upload (upload keys, the
// browser's multipart uploads): the authenticated sender, which must be a
// user, since what a user stages lands under their own prefix.
func (s *Service) uploader(ctx context.Context) (string, error) {
	c, err := s.askedBy(ctx)
	if err != nil {
		return "", err
	}
	if c.user.Name == "" {
		return "", bus.Forbidden(errors.New("uploads are a user's: a service writes with its own keys"))
	}
	return c.user.Name, nil
}

func (s *Service) queryUploadCreds(ctx context.Context, r schemas.CatalogUploadCredsRequest) (schemas.S3TemporaryCredentials, error) {
	user, err := s.uploader(ctx)
	if err != nil {
		return schemas.S3TemporaryCredentials{}, err
	}
	p, err := s3iam.UploadPrefixes(s.cfg.UploadBucket, user, strings.TrimSuffix(blob.StagingPrefix, "/"), strings.TrimSuffix(blob.KernelUploadPrefix, "/"))
	if err != nil {
		return schemas.S3TemporaryCredentials{}, bus.Forbidden(err)
	}
	out, err := s.temporary(ctx, s.cfg.UploadBucket, p, r.DurationS)
	out.Bucket = s.cfg.UploadBucket
	out.Prefixes = []string{blob.UserStagingPrefix(user), blob.UserKernelPrefix(user)}
	return out, err
}

// temporary asks the STS of the server that holds bucket (a remote's
// for a remote datastore's blob, with the catalog's keys there) for keys
// acting as the catalog limited to p.
func (s *Service) temporary(ctx context.Context, bucket string, p s3iam.Policy, seconds int64) (schemas.S3TemporaryCredentials, error) {
	t, err := s3iam.AssumeRole(ctx, s.blobs.ConfigFor(bucket), p, grant(seconds))
	if err != nil {
		return schemas.S3TemporaryCredentials{}, fmt.Errorf("temporary S3 keys: %w", err)
	}
	pub := s.publicS3(bucket)
	return schemas.S3TemporaryCredentials{Endpoint: endpointURL(pub), Region: pub.Region,
		AccessKey: t.AccessKey, SecretKey: t.SecretKey, SessionToken: t.SessionToken,
		ExpiresAt: t.Expiration.UTC().Format(time.RFC3339)}, nil
}
