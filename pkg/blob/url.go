package blob

import (
	"fmt"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

const scheme = "s3://"

// URL returns "s3://bucket/key".
func URL(bucket, key string) string { return scheme + bucket + "/" + key }

// ParseURL splits "s3://bucket/key" into its bucket and key. The key is
// taken verbatim (no percent-decoding): S3 keys may hold any character.
func ParseURL(u string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(u, scheme)
	if !ok {
		if i := strings.Index(u, "://"); i > 0 {
			return "", "", fmt.Errorf("blob URL %q: scheme %q is not s3", u, u[:i])
		}
		return "", "", fmt.Errorf("blob URL %q: want s3://bucket/key", u)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" {
		return "", "", fmt.Errorf("blob URL %q: missing bucket", u)
	}
	if err := s3utils.CheckValidBucketNameStrict(bucket); err != nil {
		return "", "", fmt.Errorf("blob URL %q: bucket %q: %w", u, bucket, err)
	}
	if key == "" {
		return "", "", fmt.Errorf("blob URL %q: missing key", u)
	}
	if err := s3utils.CheckValidObjectName(key); err != nil {
		return "", "", fmt.Errorf("blob URL %q: key %q: %w", u, key, err)
	}
	return bucket, key, nil
}
