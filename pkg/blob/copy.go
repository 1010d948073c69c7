package blob

import (
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// maxSingleCopy is the largest object S3 copies in one CopyObject request
// (5 GiB); larger ones are copied part by part. A variable so that tests
// can take the multipart path with small objects.
var maxSingleCopy int64 = 5 << 30

// Copy copies an object server side: the bytes move inside the object
// store and never through this process, whatever the size. Up to 5 GiB it
// is one CopyObject request; above, a multipart copy (UploadPartCopy) made
// by minio-go's ComposeObject. The source must not change during the copy
// (its ETag is pinned). The destination is replaced atomically: readers see
// the old object or the new one, never a mix. It returns the destination
// as stored.
func (s *Store) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (ObjectInfo, error) {
	if srcBucket == dstBucket && srcKey == dstKey {
		return ObjectInfo{}, fmt.Errorf("copy %s onto itself", URL(srcBucket, srcKey))
	}
	src, err := s.Stat(ctx, srcBucket, srcKey)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy: %w", err)
	}
	from := minio.CopySrcOptions{Bucket: srcBucket, Object: srcKey, MatchETag: src.ETag}
	to := minio.CopyDestOptions{Bucket: dstBucket, Object: dstKey}
	if src.Size <= maxSingleCopy {
		_, err = s.client.CopyObject(ctx, to, from)
	} else {
		_, err = s.client.ComposeObject(ctx, to, from)
	}
	if err != nil {
		return ObjectInfo{}, wrapErr("copy "+URL(srcBucket, srcKey)+" to", dstBucket, dstKey, err)
	}
	dst, err := s.Stat(ctx, dstBucket, dstKey)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy: %w", err)
	}
	if dst.Size != src.Size {
		return dst, fmt.Errorf("copy %s to %s: the copy has %d bytes, the source %d", URL(srcBucket, srcKey), URL(dstBucket, dstKey), dst.Size, src.Size)
	}
	return dst, nil
}
