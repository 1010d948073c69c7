package blob

import (
	"context"
	"fmt"

	"github.com/minio/minio-go/v7"
)

// maxCopyPart is the most bytes S3 copies in one request, CopyObject or
// UploadPartCopy (5 GiB): a larger object is copied in parts of at most
// this size (even splits: a 6 GiB object is two parts of 3 GiB). A
// variable so that tests take the multipart path, with several parts, on
// small objects (SetMaxCopyPart); a test value must keep the even splits
// at S3's 5 MiB minimum part size or more.
var maxCopyPart int64 = 5 << 30

// Copy copies an object server side: the bytes move inside the object
// store and never through this process, whatever the size. Up to 5 GiB it
// is one CopyObject request; above, a multipart copy (UploadPartCopy) made
// by minio-go's ComposeObject, which aborts its upload when a part fails.
// The source must not change during the copy (its ETag is pinned: a
// source replaced meanwhile fails the copy). The destination is replaced
// atomically: readers see the old object or the new one, never a mix.
// A one-request copy has the store record the whole object's SHA-256
// checksum (the same digest as the hex SHA-256 the catalog keeps); a
// multipart copy records none (MinIO computes no checksum for a copied
// part), so whoever needs the digest of such a copy reads it back. It
// returns the destination as stored, with the checksum the store holds.
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
	if src.Size <= maxCopyPart {
		to.ChecksumType = minio.ChecksumSHA256
		_, err = c.client.CopyObject(ctx, to, from)
	} else {
		// No checksum asked: MinIO's UploadPartCopy answers no part
		// checksum, so a multipart upload created with one cannot be
		// completed.
		to.PartSize = uint64(maxCopyPart)
		_, err = c.client.ComposeObject(ctx, to, from)
	}
	if minio.ToErrorResponse(err).Code == "PreconditionFailed" {
		err = fmt.Errorf("the source changed while it was copied (its ETag was %s): %w", src.ETag, err)
	}
	if err != nil {
		return ObjectInfo{}, wrapErr("copy "+URL(srcBucket, srcKey)+" to", dstBucket, dstKey, err)
	}
	return s.checkCopied(ctx, src, dstBucket, dstKey)
}

// checkCopied is the destination of a copy of src, as stored (with the
// checksum the store recorded), checked to have src's size.
func (s *Store) checkCopied(ctx context.Context, src ObjectInfo, dstBucket, dstKey string) (ObjectInfo, error) {
	dst, err := s.StatChecksum(ctx, dstBucket, dstKey)
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
