package blob

import (
	"fmt"
	"os"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/slipway/slipway/schemas"
)

// Environment variables read by LocationsFromEnv. The datastore and upload
// variables are the catalog's own, so every service agrees on them.
const (
	EnvUploadBucket        = "SLIPWAY_UPLOAD_BUCKET"
	EnvDefaultBucket       = "SLIPWAY_DATASTORE_DEFAULT_BUCKET"
	EnvFilesBucket         = "SLIPWAY_DATASTORE_FILES_BUCKET"
	EnvImportBuckets       = "SLIPWAY_IMPORT_BUCKETS"
	EnvMarketBuckets       = "SLIPWAY_MARKET_BUCKETS"
	DefaultUploadBucket    = "slipway-uploads"
	DefaultDatastoreBucket = "slipway-default"
	DefaultFilesBucket     = "slipway-files"
	DefaultMarketBucket    = "slipway-market"
	// DatastoreBucketPrefix begins the bucket of every datastore an
	// administrator creates (catalog datastore-create): every service takes
	// a bucket with this prefix as a datastore's, and the services' S3
	// policies cover slipway-ds-* (pkg/s3iam), so a new datastore needs no
	// new policy. The configured datastores keep their own names.
	DatastoreBucketPrefix = "slipway-ds-"
	// StagingPrefix is where the CLI stages uploads in the upload bucket
	// ("uploads/<user>/<uuid>/<file name>", see UserStagingPrefix).
	StagingPrefix = "uploads/"
	// KernelUploadPrefix is where the CLI stages a kernel or package for
	// kernel-registry's add ("kernels/<user>/<uuid>/<file name>", see
	// UserKernelPrefix).
	KernelUploadPrefix = "kernels/"
	// BuildPrefix is where the builder stages a disk it carried out of a
	// container image, in the upload bucket, for the converter.
	BuildPrefix = "builds/"
	// OVAPrefix is where the converter stages the disks of an OVA, in the
	// upload bucket, for the imports the catalog starts of them
	// ("ova/<saga>/disk<N>", see OVAStaging).
	OVAPrefix = "ova/"
	// MetaCommand is the user metadata that names the command whose job
	// wrote an object (see OwnedBy).
	MetaCommand = "Slipway-Command"
)

// Locations are the buckets the system derives S3 locations from. Commands
// never choose where a service writes: a destination is
// images/<image>/<saga>/… in a datastore bucket (or builds/<image>/<saga>/…
// in the upload bucket), and s3:// sources are read only from the upload
// bucket and the buckets an operator lists for imports.
type Locations struct {
	// DatastoreBuckets are the buckets of the catalog's datastores.
	DatastoreBuckets []string
	// UploadBucket holds the CLI's staged uploads and the builder's
	// carried disks.
	UploadBucket string
	// ImportBuckets are further buckets s3:// import sources may name
	// (SLIPWAY_IMPORT_BUCKETS, comma-separated). LocationsFromEnv adds
	// MarketBuckets: what a private marketplace publishes is imported
	// from there.
	ImportBuckets []string
	// MarketBuckets are the buckets S3 marketplaces (MAD s3) may live in
	// (SLIPWAY_MARKET_BUCKETS, comma-separated; default slipway-market):
	// market-lxc writes them, the converter reads them for imports.
	MarketBuckets []string
}

// DefaultLocations are the buckets of a default deployment.
func DefaultLocations() Locations {
	return Locations{
		DatastoreBuckets: []string{DefaultDatastoreBucket, DefaultFilesBucket},
		UploadBucket:     DefaultUploadBucket,
		ImportBuckets:    []string{DefaultMarketBucket},
		MarketBuckets:    []string{DefaultMarketBucket},
	}
}

// LocationsFromEnv reads SLIPWAY_DATASTORE_DEFAULT_BUCKET,
// SLIPWAY_DATASTORE_FILES_BUCKET, SLIPWAY_UPLOAD_BUCKET and
// SLIPWAY_IMPORT_BUCKETS; unset variables keep DefaultLocations. A bucket
// name that is not valid is an error naming the variable.
func LocationsFromEnv() (Locations, error) {
	l := Locations{
		DatastoreBuckets: []string{envOr(EnvDefaultBucket, DefaultDatastoreBucket), envOr(EnvFilesBucket, DefaultFilesBucket)},
		UploadBucket:     envOr(EnvUploadBucket, DefaultUploadBucket),
	}
	l.ImportBuckets = bucketList(os.Getenv(EnvImportBuckets))
	l.MarketBuckets = []string{DefaultMarketBucket}
	if v, ok := os.LookupEnv(EnvMarketBuckets); ok {
		l.MarketBuckets = bucketList(v)
	}
	for _, b := range l.MarketBuckets {
		if !slices.Contains(l.ImportBuckets, b) {
			l.ImportBuckets = append(l.ImportBuckets, b)
		}
	}
	for _, b := range append(append([]string{l.UploadBucket}, l.DatastoreBuckets...), l.ImportBuckets...) {
		if _, _, err := ParseURL(URL(b, "x")); err != nil {
			return l, fmt.Errorf("bucket %q (%s, %s, %s, %s, %s): %w", b, EnvDefaultBucket, EnvFilesBucket, EnvUploadBucket, EnvImportBuckets, EnvMarketBuckets, err)
		}
	}
	if strings.HasPrefix(l.UploadBucket, DatastoreBucketPrefix) {
		return l, fmt.Errorf("%s=%q: %s* names the buckets of created datastores", EnvUploadBucket, l.UploadBucket, DatastoreBucketPrefix)
	}
	for _, b := range l.ImportBuckets {
		if l.IsDatastoreBucket(b) || b == l.UploadBucket && slices.Contains(l.MarketBuckets, b) {
			return l, fmt.Errorf("%s or %s lists %q, a datastore or upload bucket: imports must not read other images' blobs, and marketplaces have their own buckets", EnvImportBuckets, EnvMarketBuckets, b)
		}
	}
	return l, nil
}

// bucketList reads a comma-separated list of bucket names.
func bucketList(v string) []string {
	var out []string
	for b := range strings.SplitSeq(v, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}

// IsMarketBucket reports whether bucket is one an S3 marketplace may live in.
func (l Locations) IsMarketBucket(bucket string) bool {
	return slices.Contains(l.MarketBuckets, bucket)
}

// serviceStaging is where a service stages objects in the upload bucket
// for an image-create with staged: true, as <prefix><id>/<file>:
// kernel-registry (kernel-registry/<uuid>/vmlinuz, initrd.img) and the
// launcher's save-as (vms/<vm>/saveas-<disk>-<seq>.qcow2). A user stages
// under UserStagingPrefix. They are the only objects an import may consume
// (delete) as staged.
var serviceStaging = map[string]string{
	schemas.ServiceKernelRegistry: "kernel-registry/",
	schemas.ServiceLauncher:       "vms/",
	// The catalog imports the disks of an OVA it had the converter stage.
	schemas.ServiceCatalog: OVAPrefix,
}

// stagerName is the form of a user a staging prefix names: what package
// identity lets sign in, so never a slash, a dot or a wildcard.
var stagerName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,127}$`)

// UserStagingPrefix is where user stages files for image-create:
// uploads/<user>/ of the upload bucket.
func UserStagingPrefix(user string) string { return StagingPrefix + user + "/" }

// UserKernelPrefix is where user stages sources of kernel-registry's add:
// kernels/<user>/ of the upload bucket.
func UserKernelPrefix(user string) string { return KernelUploadPrefix + user + "/" }

// UserStagingPrefixes are the prefixes of the upload bucket users write
// with their upload keys (s3iam.UploadPrefixes): uploads/<user>/ and
// kernels/<user>/.
var UserStagingPrefixes = []string{StagingPrefix, KernelUploadPrefix}

// UserStagingOwner is the user whose staging area (UserStagingPrefix or
// UserKernelPrefix) key lies in: ok only for <prefix><user>/<rest> with a
// user name that can own one (never a slash, a dot or a wildcard) and a
// rest that is not empty. A service's staging (kernel-registry/, vms/,
// ova/), a build (builds/), kernel-registry's kept vmlinux
// (kernels/<image id>/vmlinux, should the files bucket be the upload
// bucket) and anything else are no user's: ok is false.
func UserStagingOwner(key string) (user string, ok bool) {
	for _, prefix := range UserStagingPrefixes {
		rest, found := strings.CutPrefix(key, prefix)
		if !found {
			continue
		}
		user, rest, found = strings.Cut(rest, "/")
		if found && rest != "" && stagerName.MatchString(user) {
			return user, true
		}
	}
	return "", false
}

// stagingPrefix is where stager (an authenticated user or service name)
// may stage for image-create.
func stagingPrefix(stager string) (string, error) {
	if p, ok := serviceStaging[stager]; ok {
		return p, nil
	}
	if schemas.IsService(stager) {
		return "", fmt.Errorf("service %s stages nothing for image-create", stager)
	}
	if !stagerName.MatchString(stager) {
		return "", fmt.Errorf("%q is not a user name that can own a staging prefix", stager)
	}
	return UserStagingPrefix(stager), nil
}

// sagaToken is the form of a saga ID in a key: a lower-case UUID.
var sagaToken = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// CheckSaga refuses a saga ID that cannot be part of a key.
func CheckSaga(sagaID string) error {
	if !sagaToken.MatchString(sagaID) {
		return fmt.Errorf("saga (correlation) ID %q is not a lower-case UUID: it names the attempt's key", sagaID)
	}
	return nil
}

// ImagePrefix is the key prefix of every blob an image ever had.
func ImagePrefix(imageID int64) string {
	return "images/" + strconv.FormatInt(imageID, 10) + "/"
}

// AttemptPrefix is the key prefix of what one saga (one attempt) writes
// for an image: images/<image>/<saga>/.
func AttemptPrefix(imageID int64, sagaID string) string {
	return ImagePrefix(imageID) + sagaID + "/"
}

// BuildKey is where the builder stages the disk of a kind-disk build, in
// the upload bucket.
func BuildKey(imageID int64, sagaID string) string {
	return BuildPrefix + strconv.FormatInt(imageID, 10) + "/" + sagaID + "/disk.raw"
}

// OVAStaging is where the converter stages the disks of the OVA import
// saga sagaID: s3://<upload bucket>/ova/<saga>/.
func (l Locations) OVAStaging(sagaID string) string {
	return URL(l.UploadBucket, OVAPrefix+sagaID+"/")
}

// OVADisk is the staged disk n of an OVA staged at staging.
func OVADisk(staging string, n int) string {
	return staging + "disk" + strconv.Itoa(n)
}

// CheckOVAStaging refuses an OVA staging location that is not the one
// derived from the saga.
func (l Locations) CheckOVAStaging(staging, sagaID string) error {
	if err := CheckSaga(sagaID); err != nil {
		return fmt.Errorf("staging: %w", err)
	}
	if want := l.OVAStaging(sagaID); staging != want {
		return fmt.Errorf("staging %s: want %s: the key is derived from the saga (correlation ID), never chosen by a command", staging, want)
	}
	return nil
}

// diskName is the last element of a derived destination: disk or
// disk.<format>.
var diskName = regexp.MustCompile(`^disk(\.[a-z0-9]{1,8})?$`)

// IsDatastoreBucket reports whether bucket is a datastore's: a configured
// one, or one named with DatastoreBucketPrefix (a created datastore's).
func (l Locations) IsDatastoreBucket(bucket string) bool {
	return slices.Contains(l.DatastoreBuckets, bucket) || strings.HasPrefix(bucket, DatastoreBucketPrefix)
}

// CheckDest refuses a destination that is not the one the system derives
// for this image and saga: s3://<datastore bucket>/images/<image>/<saga>/disk[.<format>].
func (l Locations) CheckDest(dest string, imageID int64, sagaID string) error {
	bucket, key, err := ParseURL(dest)
	if err != nil {
		return fmt.Errorf("dest: %w", err)
	}
	if err := CheckSaga(sagaID); err != nil {
		return fmt.Errorf("dest: %w", err)
	}
	if !l.IsDatastoreBucket(bucket) {
		return fmt.Errorf("dest %s: bucket %q is not a datastore bucket (%s): a service writes image blobs only to datastores", dest, bucket, strings.Join(append(slices.Clone(l.DatastoreBuckets), DatastoreBucketPrefix+"*"), ", "))
	}
	prefix := AttemptPrefix(imageID, sagaID)
	name, ok := strings.CutPrefix(key, prefix)
	if !ok || !diskName.MatchString(name) {
		return fmt.Errorf("dest %s: want s3://%s/%sdisk[.<format>]: the key is derived from the image and the saga (correlation ID), never chosen by a command", dest, bucket, prefix)
	}
	return nil
}

// CheckBuildDest refuses a kind-disk build destination that is not
// s3://<upload bucket>/builds/<image>/<saga>/disk.raw.
func (l Locations) CheckBuildDest(dest string, imageID int64, sagaID string) error {
	if err := CheckSaga(sagaID); err != nil {
		return fmt.Errorf("dest: %w", err)
	}
	if want := URL(l.UploadBucket, BuildKey(imageID, sagaID)); dest != want {
		return fmt.Errorf("dest %s: want %s: the key is derived from the image and the saga (correlation ID), never chosen by a command", dest, want)
	}
	return nil
}

// CheckSource refuses an s3:// import source outside the upload bucket and
// the import buckets; other URLs pass (their scheme is the fetcher's
// business).
func (l Locations) CheckSource(src string) error {
	if !strings.HasPrefix(src, scheme) {
		return nil
	}
	bucket, _, err := ParseURL(src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if l.IsDatastoreBucket(bucket) {
		return fmt.Errorf("source %s: bucket %q is a datastore bucket, not the upload bucket (%s) nor listed in %s: an import never reads another image's blob", src, bucket, l.UploadBucket, EnvImportBuckets)
	}
	if bucket == l.UploadBucket || slices.Contains(l.ImportBuckets, bucket) {
		return nil
	}
	return fmt.Errorf("source %s: bucket %q is not the upload bucket (%s) nor listed in %s or %s: imports read s3:// only from those", src, bucket, l.UploadBucket, EnvImportBuckets, EnvMarketBuckets)
}

// StagingKey is a fresh key under prefix for a file the CLI stages:
// <prefix><uuid>/<base of file>.
func StagingKey(prefix, file string) string {
	return prefix + uuid.NewString() + "/" + path.Base(file)
}

// UserStagingKey is a fresh key under user's staging prefix for a file a
// client names (the web console's uploads): <prefix><uuid>/<name>. The
// name is untrusted, so it must already be one segment: printable UTF-8 of
// at most 255 bytes, no slash or backslash, not "." or "..". The key is
// one CheckStaged accepts for user.
func UserStagingKey(user, name string) (string, error) {
	if !stagerName.MatchString(user) {
		return "", fmt.Errorf("%q is not a user name that can own a staging prefix", user)
	}
	if err := checkFileName(name); err != nil {
		return "", err
	}
	key := UserStagingPrefix(user) + uuid.NewString() + "/" + name
	if err := s3utils.CheckValidObjectName(key); err != nil {
		return "", fmt.Errorf("file name %q: %w", name, err)
	}
	return key, nil
}

// checkFileName refuses a file name that is not one printable key segment.
func checkFileName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("file name %q: give the file's own name", name)
	case len(name) > 255:
		return fmt.Errorf("file name of %d bytes: at most 255", len(name))
	case !utf8.ValidString(name):
		return fmt.Errorf("file name %q: not UTF-8", name)
	case strings.ContainsAny(name, "/\\"):
		return fmt.Errorf("file name %q: a name, not a path (no / or \\)", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("file name %q: control characters are not allowed", name)
	}
	return nil
}

// CheckStaged refuses a staged path that is not an object stager (the
// authenticated sender: a user, or the service staging) staged itself:
// s3://<upload bucket>/uploads/<user>/<id>/<file> for a user,
// kernel-registry/<id>/<file> or vms/<vm>/<file> for those services. The
// import deletes a staged object, so nothing else may be staged, and no
// one may consume another user's upload.
func (l Locations) CheckStaged(path, stager string) error {
	prefix, err := stagingPrefix(stager)
	if err != nil {
		return fmt.Errorf("staged path %s: %w", path, err)
	}
	if l.stagedUnder(path, prefix) {
		return nil
	}
	return fmt.Errorf("staged path %s: %s stages only s3://%s/%s<id>/<file> (the CLI writes there with the upload keys the catalog issues); the import deletes a staged object, so nothing else may be staged",
		path, stager, l.UploadBucket, prefix)
}

// CheckKernelUpload refuses a kernel-registry add source that is not what
// the CLI stages for user: s3://<upload bucket>/kernels/<user>/<id>/<file>.
// The add deletes its source, so it may name nothing else.
func (l Locations) CheckKernelUpload(path, user string) error {
	if stagerName.MatchString(user) && l.stagedUnder(path, UserKernelPrefix(user)) {
		return nil
	}
	return fmt.Errorf("source %s: kernel uploads of %q are s3://%s/%s<id>/<file> (what the CLI writes); add deletes its source, so it reads nothing else",
		path, user, l.UploadBucket, UserKernelPrefix(user))
}

// stagedUnder reports whether path is s3://<upload bucket>/<prefix><id>/<file>.
func (l Locations) stagedUnder(path, prefix string) bool {
	bucket, key, err := ParseURL(path)
	if err != nil || bucket != l.UploadBucket {
		return false
	}
	rest, ok := strings.CutPrefix(key, prefix)
	return ok && strings.Count(rest, "/") == 1 && !strings.HasPrefix(rest, "/") && !strings.HasSuffix(rest, "/")
}

// SavedDiskKey is where the launcher stages a persistent disk it gives
// back to the catalog: vms/<vm>/disk-<disk>.<format>.
func SavedDiskKey(vmID, diskID int64, format string) string {
	return fmt.Sprintf("vms/%d/disk-%d.%s", vmID, diskID, format)
}

// savedDisk is the form of SavedDiskKey after vms/<vm>/.
var savedDisk = regexp.MustCompile(`^disk-[0-9]+\.[a-z0-9]{1,8}$`)

// CheckSavedDisk refuses a release's saved disk that is not one the
// launcher staged for that VM: s3://<upload bucket>/vms/<vm>/disk-<disk>.<format>.
// The catalog takes (deletes) it, so it may name nothing else.
func (l Locations) CheckSavedDisk(path string, vmID int64) error {
	bucket, key, err := ParseURL(path)
	prefix := "vms/" + strconv.FormatInt(vmID, 10) + "/"
	if err == nil && bucket == l.UploadBucket {
		if rest, ok := strings.CutPrefix(key, prefix); ok && savedDisk.MatchString(rest) {
			return nil
		}
	}
	return fmt.Errorf("save.source %q: a saved disk is s3://%s/%sdisk-<disk>.<format>, staged by the launcher for VM %d; the catalog deletes it once copied, so it takes nothing else",
		path, l.UploadBucket, prefix, vmID)
}

// CheckImageBlob refuses a source that is not an image's blob: an object
// under images/ in a datastore bucket (what crypto-luks encrypts).
func (l Locations) CheckImageBlob(src string) error {
	bucket, key, err := ParseURL(src)
	if err != nil {
		return fmt.Errorf("source: %w", err)
	}
	if !l.IsDatastoreBucket(bucket) || !strings.HasPrefix(key, "images/") {
		return fmt.Errorf("source %s: not an image's blob (s3://<datastore bucket>/images/…; datastore buckets: %s)", src, strings.Join(append(slices.Clone(l.DatastoreBuckets), DatastoreBucketPrefix+"*"), ", "))
	}
	return nil
}
