package s3iam

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/minio/minio-go/v7/pkg/s3utils"
)

// Policy is an S3 (IAM) policy document. It is only ever built from these
// types and encoded by encoding/json; every bucket, prefix and key in a
// Resource went through the checks below, so a name cannot widen it.
type Policy struct {
	Version   string      `json:"Version"`
	Statement []Statement `json:"Statement"`
}

// Statement allows Action on Resource.
type Statement struct {
	Effect   string     `json:"Effect"`
	Action   []string   `json:"Action"`
	Resource []Resource `json:"Resource"`
}

// Resource is an S3 ARN made by BucketARN, ObjectsARN or ObjectARN.
type Resource string

// policyVersion is the only version of the policy language.
const policyVersion = "2012-10-17"

// Allow is a policy of the given statements.
func Allow(statements ...Statement) Policy {
	return Policy{Version: policyVersion, Statement: statements}
}

// JSON encodes the policy; a policy without a statement is refused (MinIO
// would refuse it with a less clear message).
func (p Policy) JSON() ([]byte, error) {
	if len(p.Statement) == 0 {
		return nil, errors.New("s3iam: a policy needs at least one statement")
	}
	return json.Marshal(p)
}

// Actions, grouped by what a service does with an object.
var (
	// ActRead reads an object (GET and HEAD).
	ActRead = []string{"s3:GetObject"}
	// ActWrite writes one, in one PUT or in parts.
	ActWrite = []string{"s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"}
	// ActDelete deletes one.
	ActDelete = []string{"s3:DeleteObject"}
	// ActBucket lists a bucket and asks where it is (minio-go does).
	ActBucket = []string{"s3:ListBucket", "s3:GetBucketLocation", "s3:ListBucketMultipartUploads"}
	// ActCreateBucket creates a bucket (the catalog, for a datastore), and
	// removes an empty one it made (datastore-delete).
	ActCreateBucket = []string{"s3:CreateBucket", "s3:DeleteBucket"}
)

// bucketPrefix is the start of bucket names a policy may name with a
// wildcard (blob.DatastoreBucketPrefix): a valid bucket name's start,
// ending in "-", so that the wildcard cannot reach a shorter name.
var bucketPrefix = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{1,40}-$`)

// BucketsARN is every bucket whose name begins with prefix (for listing,
// or creating, them).
func BucketsARN(prefix string) (Resource, error) {
	if !bucketPrefix.MatchString(prefix) {
		return "", fmt.Errorf("s3iam: bucket prefix %q: want lower-case letters, digits and '-', ending in '-'", prefix)
	}
	return Resource("arn:aws:s3:::" + prefix + "*"), nil
}

// PrefixedObjectsARN is every object under the prefix segments of every
// bucket whose name begins with prefix.
func PrefixedObjectsARN(prefix string, segments ...string) (Resource, error) {
	b, err := BucketsARN(prefix)
	if err != nil {
		return "", err
	}
	keys, err := Prefix(segments...)
	if err != nil {
		return "", err
	}
	return Resource(string(b) + "/" + keys + "*"), nil
}

// segment is one element of a prefix a policy names: a user name (the
// form pkg/identity allows) or a fixed word such as "uploads". No
// wildcard (*, ?), no policy variable ($), no slash, no quote, no dot.
var segment = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,127}$`)

// objectKey is an exact key a policy names: what Slipway derives
// (images/<id>/<saga>/disk.qcow2, kernels/<id>/vmlinux…).
var objectKey = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$`)

// CheckSegment refuses what cannot be one element of a policy's prefix.
func CheckSegment(s string) error {
	if !segment.MatchString(s) {
		return fmt.Errorf("s3iam: %q cannot name a prefix in a policy: want %s", s, segment)
	}
	return nil
}

// CheckBucket refuses what is not a bucket name (strict S3 rules: lower
// case letters, digits, dots and hyphens; so no wildcard).
func CheckBucket(b string) error {
	if err := s3utils.CheckValidBucketNameStrict(b); err != nil {
		return fmt.Errorf("s3iam: bucket %q: %w", b, err)
	}
	return nil
}

// CheckKey refuses an object key a policy cannot name exactly: one with a
// wildcard, a policy variable, a quote, an empty or dot-only element.
func CheckKey(key string) error {
	if len(key) > 1024 || !objectKey.MatchString(key) {
		return fmt.Errorf("s3iam: object key %q cannot be named in a policy: want elements of [A-Za-z0-9._-] joined by /", key)
	}
	for el := range strings.SplitSeq(key, "/") {
		if strings.Trim(el, ".") == "" {
			return fmt.Errorf("s3iam: object key %q: element %q", key, el)
		}
	}
	return nil
}

// CheckName refuses a name that cannot be a MinIO user or canned policy
// made by Slipway.
func CheckName(name string) error {
	if len(name) < 3 || len(name) > 64 || !segment.MatchString(name) {
		return fmt.Errorf("s3iam: name %q: want 3 to 64 of [a-z0-9_-], starting with a letter or digit", name)
	}
	return nil
}

// BucketARN is the bucket itself (for listing).
func BucketARN(bucket string) (Resource, error) {
	if err := CheckBucket(bucket); err != nil {
		return "", err
	}
	return Resource("arn:aws:s3:::" + bucket), nil
}

// Prefix joins checked segments into a key prefix ending in "/".
func Prefix(segments ...string) (string, error) {
	if len(segments) == 0 {
		return "", errors.New("s3iam: empty prefix")
	}
	for _, s := range segments {
		if err := CheckSegment(s); err != nil {
			return "", err
		}
	}
	return strings.Join(segments, "/") + "/", nil
}

// ObjectsARN is every object of bucket under the prefix segments
// (<segment>/<segment>/…); no segment means the whole bucket.
func ObjectsARN(bucket string, segments ...string) (Resource, error) {
	if err := CheckBucket(bucket); err != nil {
		return "", err
	}
	if len(segments) == 0 {
		return Resource("arn:aws:s3:::" + bucket + "/*"), nil
	}
	prefix, err := Prefix(segments...)
	if err != nil {
		return "", err
	}
	return Resource("arn:aws:s3:::" + bucket + "/" + prefix + "*"), nil
}

// ObjectARN is exactly one object.
func ObjectARN(bucket, key string) (Resource, error) {
	if err := CheckBucket(bucket); err != nil {
		return "", err
	}
	if err := CheckKey(key); err != nil {
		return "", err
	}
	return Resource("arn:aws:s3:::" + bucket + "/" + key), nil
}
