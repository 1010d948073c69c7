package catalog

import (
	"log/slog"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/defaults"
)

// Defaults of Config.
const (
	DefaultUser              = "oneadmin"
	DefaultGroup             = "oneadmin"
	DefaultConvertDeadline   = 2 * time.Hour
	DefaultResolveDeadline   = 10 * time.Minute
	DefaultBuildDeadline     = 2 * time.Hour
	DefaultCommitDeadline    = 10 * time.Minute
	DefaultEncryptDeadline   = 2 * time.Hour
	DefaultReconcileInterval = 30 * time.Second
	// DefaultUploadExpiry is how long an upload-start upload may stay
	// incomplete: a day, MinIO's own stale-upload expiry.
	DefaultUploadExpiry = 24 * time.Hour
	DefaultUploadBucket = "slipway-uploads"
	// DefaultMaxVirtualSize caps what an import may expand to: 2 TiB.
	DefaultMaxVirtualSize int64 = 2 << 40
	// DedupTTL is how long processed command IDs are remembered.
	DedupTTL = 24 * time.Hour
)

// Config configures the catalog.
type Config struct {
	// User and Group own the images a service creates (a kernel, a
	// marketplace's template disk); a user's images are the user's.
	User, Group string
	// IdentityDir holds the keys that sign users' JWTs (package identity,
	// made by slipway up or `slipway identity init`); without it the
	// catalog keeps users and groups but issues no credentials.
	IdentityDir string
	// ConvertDeadline bounds the convert phase of an import (default 2h).
	ConvertDeadline time.Duration
	// ResolveDeadline bounds the resolve phase of a docker import: the
	// market's registry lookup (default 10 min).
	ResolveDeadline time.Duration
	// BuildDeadline bounds the build phase of a docker import: pull,
	// flatten, mkfs and upload by the builder (default 2h).
	BuildDeadline time.Duration
	// EncryptDeadline bounds the encrypt phase of the LUKS sagas:
	// crypto-luks downloads, encrypts and uploads the whole disk, as the
	// converter does in an import (default 2h). A key-slot change (saga
	// slots) moves the whole disk the same way and has the same bound.
	EncryptDeadline time.Duration
	// CommitDeadline bounds the commit phase (default 10 min).
	CommitDeadline time.Duration
	// ReconcileInterval is how often expired and stuck sagas are looked
	// for (default 30s).
	ReconcileInterval time.Duration
	// StuckAfter is how long an image stays in DELETE, LOCKED_USED or
	// LOCKED_USED_PERS, unchanged and held by no running saga, before the
	// image reconciler finishes or rolls back what left it there
	// (default 10 min).
	StuckAfter time.Duration
	// UploadExpiry is how long a multipart upload begun by upload-start
	// (the web console's) may stay incomplete before the catalog aborts
	// it and S3 drops its parts, and how long an object in a user's
	// staging area may stay unconsumed before the staged sweep deletes it
	// (SLIPWAY_CATALOG_UPLOAD_EXPIRY, default 24h).
	UploadExpiry time.Duration
	// Datastores served; default DefaultDatastores().
	Datastores []Datastore
	// UploadBucket holds objects staged by the CLI (default
	// "slipway-uploads"); only objects there may be marked staged, since
	// the catalog deletes staged objects after an import.
	UploadBucket string
	// ImportBuckets are the buckets besides UploadBucket an s3:// path
	// may name (SLIPWAY_IMPORT_BUCKETS); a datastore bucket never
	// qualifies, so no import reads another image's blob.
	ImportBuckets []string
	// S3PublicEndpoint is the S3 endpoint as users reach it, named in the
	// presigned URLs and temporary keys the catalog hands out
	// (SLIPWAY_S3_PUBLIC_ENDPOINT; default the catalog's own endpoint).
	S3PublicEndpoint string
	// MaxVirtualSize is the largest virtual size an import may have
	// (default 2 TiB).
	MaxVirtualSize int64
	// VerifyDigest makes the commit check the blob's content against the
	// writer's report: by the S3 checksum the store verified on receipt
	// when the report has one (a HEAD), else by reading the whole blob
	// back and checking its SHA-256 (one full read). Off, only the size
	// (and a reported S3 checksum, which costs nothing more) is checked.
	VerifyDigest bool
	// Concurrency is how many commands (and, separately, converter
	// events) one replica handles at once (default 1, which keeps the
	// commands about one image in order within a replica).
	Concurrency int
	// Version is reported by the micro service (default "0.1.0").
	Version string
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	defaults.Fill(c, Config{User: DefaultUser, Group: DefaultGroup,
		ConvertDeadline: DefaultConvertDeadline, ResolveDeadline: DefaultResolveDeadline,
		BuildDeadline: DefaultBuildDeadline, EncryptDeadline: DefaultEncryptDeadline,
		CommitDeadline: DefaultCommitDeadline, ReconcileInterval: DefaultReconcileInterval, StuckAfter: DefaultStuckAfter,
		UploadExpiry: DefaultUploadExpiry,
		Datastores:   DefaultDatastores(), UploadBucket: DefaultUploadBucket, MaxVirtualSize: DefaultMaxVirtualSize,
		Concurrency: 1, Version: "0.1.0", Logger: slog.Default()})
}

// locations are the buckets the workers check destinations and sources
// against, as the catalog is configured.
func (c *Config) locations() blob.Locations {
	l := blob.Locations{UploadBucket: c.UploadBucket, ImportBuckets: c.ImportBuckets}
	for _, ds := range c.Datastores {
		l.DatastoreBuckets = append(l.DatastoreBuckets, ds.Bucket)
	}
	return l
}

// DefaultStuckAfter is the default of Config.StuckAfter: how long an image
// may sit in DELETE, LOCKED_USED or LOCKED_USED_PERS with no saga before
// the reconciler finishes or rolls it back (stuck.go).
const DefaultStuckAfter = 10 * time.Minute
