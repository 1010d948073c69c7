package blob

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/minio/minio-go/v7"
)

// Multipart uploads for a client that holds no S3 key (the web console):
// the store, which has keys, starts the upload, presigns each part's PUT
// for the part's SHA-256, lists what the server holds, completes and
// aborts; the client only sends bytes to the presigned URLs. The upload
// records a SHA-256 per part (S3's additional checksum), so the server
// verifies every part on receipt and lists each part's SHA-256 back.

// Part is a part of a multipart upload the server holds (or that a
// client names for completing one).
type Part struct {
	Number int
	Size   int64
	ETag   string
	// SHA256 is the part's SHA-256 in base64, as S3's checksum headers
	// carry it ("" when the server recorded none).
	SHA256 string
}

// MinClientPartSize is the smallest part PartSizeFor gives: 16 MiB, big
// enough that a browser's few parts in flight keep a link busy and that a
// 150 GiB file still fits S3's 10000 parts.
const MinClientPartSize = 16 << 20

// PartSizeFor is the part size for an object of size bytes uploaded in
// parts by a client: MinClientPartSize, or more (whole MiB) when the
// object would need more than S3's 10000 parts. It returns the number of
// parts too (at least 1: an empty object is one empty part).
func PartSizeFor(size int64) (partSize int64, parts int) {
	partSize = int64(partSizeToFit(uint64(max(size, 0)), MinClientPartSize))
	parts = int((size + partSize - 1) / partSize)
	return partSize, max(parts, 1)
}

// StartMultipart starts a multipart upload of bucket/key whose parts
// carry their SHA-256 (PresignPart signs it), and returns its ID.
func (s *Store) StartMultipart(ctx context.Context, bucket, key string) (string, error) {
	opts := minio.PutObjectOptions{UserMetadata: map[string]string{checksumAlgorithmHeader: "SHA256"}}
	id, err := s.at(bucket).core.NewMultipartUpload(ctx, bucket, key, opts)
	if err != nil {
		return "", wrapErr("start multipart upload", bucket, key, err)
	}
	return id, nil
}

// PresignPart is a URL that PUTs part number of upload id of bucket/key
// until ttl passes, signed for the header x-amz-checksum-sha256: sha256
// (base64): the request must carry it, and the server refuses a body
// whose SHA-256 differs.
func (s *Store) PresignPart(ctx context.Context, bucket, key, id string, number int, sha256 string, ttl time.Duration) (*url.URL, error) {
	q := url.Values{"partNumber": {strconv.Itoa(number)}, "uploadId": {id}}
	u, err := s.at(bucket).client.PresignHeader(ctx, http.MethodPut, bucket, key, ttl, q, http.Header{checksumHeader: {sha256}})
	if err != nil {
		return nil, wrapErr(fmt.Sprintf("presign part %d", number), bucket, key, err)
	}
	return u, nil
}

// ListParts is every part the server holds of upload id of bucket/key,
// in order of number.
func (s *Store) ListParts(ctx context.Context, bucket, key, id string) ([]Part, error) {
	var out []Part
	for marker := 0; ; {
		r, err := s.at(bucket).core.ListObjectParts(ctx, bucket, key, id, marker, 1000)
		if err != nil {
			return nil, wrapErr("list parts", bucket, key, err)
		}
		for _, p := range r.ObjectParts {
			out = append(out, Part{Number: p.PartNumber, Size: p.Size, ETag: p.ETag, SHA256: p.ChecksumSHA256})
		}
		if !r.IsTruncated || r.NextPartNumberMarker <= marker {
			return out, nil
		}
		marker = r.NextPartNumberMarker
	}
}

// CompleteMultipart assembles upload id of bucket/key from parts (numbered
// 1 to N without a gap; the server checks each ETag and SHA-256 against
// what it holds) and describes the object it made.
func (s *Store) CompleteMultipart(ctx context.Context, bucket, key, id string, parts []Part) (ObjectInfo, error) {
	cps := make([]minio.CompletePart, len(parts))
	for i, p := range parts {
		if p.Number != i+1 {
			return ObjectInfo{}, fmt.Errorf("complete %s: part %d is numbered %d: parts must run from 1 without a gap", URL(bucket, key), i+1, p.Number)
		}
		cps[i] = minio.CompletePart{PartNumber: p.Number, ETag: p.ETag, ChecksumSHA256: p.SHA256}
	}
	if _, err := s.at(bucket).core.CompleteMultipartUpload(ctx, bucket, key, id, cps, minio.PutObjectOptions{}); err != nil {
		return ObjectInfo{}, wrapErr(fmt.Sprintf("complete multipart upload of %d parts", len(parts)), bucket, key, digestRefused(err))
	}
	return s.StatChecksum(ctx, bucket, key)
}

// AbortMultipart drops upload id of bucket/key and the parts the server
// holds of it; an upload already gone is not an error.
func (s *Store) AbortMultipart(ctx context.Context, bucket, key, id string) error {
	if err := s.at(bucket).core.AbortMultipartUpload(ctx, bucket, key, id); err != nil && !IsNotFound(err) {
		return wrapErr("abort multipart upload", bucket, key, err)
	}
	return nil
}
