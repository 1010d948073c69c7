package fetch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/schemas"
)

// s3Origin reads an object of the blob store and resumes with ranged GETs.
type s3Origin struct {
	store       *blob.Store
	bucket, key string
	total       int64
}

func newS3Origin(src string, store *blob.Store) (*s3Origin, error) {
	bucket, key, err := blob.ParseURL(src)
	if err != nil {
		return nil, permanentf("source %q: %v", src, err)
	}
	return &s3Origin{store: store, bucket: bucket, key: key, total: -1}, nil
}

func (o *s3Origin) String() string { return blob.URL(o.bucket, o.key) }

func (o *s3Origin) open(ctx context.Context, offset int64) (io.ReadCloser, int64, int64, error) {
	if offset == 0 {
		rc, size, err := o.store.Get(ctx, o.bucket, o.key)
		if err != nil {
			return nil, 0, 0, o.wrap(err)
		}
		o.total = size
		return rc, 0, size, nil
	}
	rc, err := o.store.GetRange(ctx, o.bucket, o.key, offset)
	if err != nil {
		return nil, 0, 0, o.wrap(err)
	}
	return rc, offset, o.total, nil
}

func (o *s3Origin) wrap(err error) error {
	if blob.IsNotFound(err) {
		return withCode(schemas.CodeSourceNotFound, fmt.Errorf("%s: object not found: %w", o, err))
	}
	// Denied, bad request…: asking again gets the same answer.
	var er minio.ErrorResponse
	if errors.As(err, &er) && er.StatusCode >= 400 && er.StatusCode < 500 &&
		er.StatusCode != http.StatusRequestTimeout && er.StatusCode != http.StatusTooManyRequests {
		return &permanentError{withCode(netguard.StatusCode(er.StatusCode), fmt.Errorf("%s: %w", o, err))}
	}
	return withCode(netguard.FailureCode(err), fmt.Errorf("%s: %w", o, err))
}
