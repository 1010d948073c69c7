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
//
// Between two servers (a bucket of a remote and one of another server)
// no server-side copy exists: the bytes stream through this process
// (streamCopy), in one part-sized buffer whatever the size.
func (s *Store) Copy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (ObjectInfo, error) {
	if srcBucket == dstBucket && srcKey == dstKey {
		return ObjectInfo{}, fmt.Errorf("copy %s onto itself", URL(srcBucket, srcKey))
	}
	c := s.at(srcBucket)
	if c != s.at(dstBucket) {
		return s.streamCopy(ctx, srcBucket, srcKey, dstBucket, dstKey)
	}
	src, err := s.Stat(ctx, srcBucket, srcKey)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy: %w", err)
	}
	from := minio.CopySrcOptions{Bucket: srcBucket, Object: srcKey, MatchETag: src.ETag}
	to := minio.CopyDestOptions{Bucket: dstBucket, Object: dstKey}
	if src.Size <= maxSingleCopy {
		_, err = c.client.CopyObject(ctx, to, from)
	} else {
		_, err = c.client.ComposeObject(ctx, to, from)
	}
	if err != nil {
		return ObjectInfo{}, wrapErr("copy "+URL(srcBucket, srcKey)+" to", dstBucket, dstKey, err)
	}
	return s.checkCopied(ctx, src, dstBucket, dstKey)
}

// checkCopied is the destination of a copy of src, as stored, checked to
// have src's size.
func (s *Store) checkCopied(ctx context.Context, src ObjectInfo, dstBucket, dstKey string) (ObjectInfo, error) {
	dst, err := s.Stat(ctx, dstBucket, dstKey)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy: %w", err)
	}
	if dst.Size != src.Size {
		return dst, fmt.Errorf("copy %s to %s: the copy has %d bytes, the source %d", URL(src.Bucket, src.Key), URL(dstBucket, dstKey), dst.Size, src.Size)
	}
	return dst, nil
}

// streamCopy copies an object to another server: a GET with the source's
// ETag pinned (a source replaced meanwhile fails the copy) streamed into a
// Put, which leaves nothing behind when it fails and replaces the
// destination atomically. The content type and the command that wrote
// the source are kept, as a server-side copy keeps them.
func (s *Store) streamCopy(ctx context.Context, srcBucket, srcKey, dstBucket, dstKey string) (ObjectInfo, error) {
	src, err := s.Stat(ctx, srcBucket, srcKey)
	if err != nil {
		return ObjectInfo{}, fmt.Errorf("copy: %w", err)
	}
	get := minio.GetObjectOptions{}
	if err := get.SetMatchETag(src.ETag); err != nil {
		return ObjectInfo{}, fmt.Errorf("copy %s: %w", URL(srcBucket, srcKey), err)
	}
	rc, _, _, err := s.at(srcBucket).core.GetObject(ctx, srcBucket, srcKey, get)
	if err != nil {
		return ObjectInfo{}, wrapErr("copy: get", srcBucket, srcKey, err)
	}
	defer rc.Close()
	opts := []PutOption{ContentType(src.ContentType)}
	if src.Command != "" {
		opts = append(opts, OwnedBy(src.Command))
	}
	if _, err := s.Put(ctx, dstBucket, dstKey, rc, src.Size, opts...); err != nil {
		return ObjectInfo{}, fmt.Errorf("copy %s across servers: %w", URL(srcBucket, srcKey), err)
	}
	return s.checkCopied(ctx, src, dstBucket, dstKey)
}
