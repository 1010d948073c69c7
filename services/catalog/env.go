package catalog

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/run"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvUser              = "SLIPWAY_USER"
	EnvGroup             = "SLIPWAY_GROUP"
	EnvIdentityDir       = "SLIPWAY_IDENTITY_DIR"
	EnvConvertDeadline   = "SLIPWAY_CATALOG_CONVERT_DEADLINE"
	EnvCommitDeadline    = "SLIPWAY_CATALOG_COMMIT_DEADLINE"
	EnvResolveDeadline   = "SLIPWAY_CATALOG_RESOLVE_DEADLINE"
	EnvBuildDeadline     = "SLIPWAY_CATALOG_BUILD_DEADLINE"
	EnvEncryptDeadline   = "SLIPWAY_CATALOG_ENCRYPT_DEADLINE"
	EnvReconcileInterval = "SLIPWAY_CATALOG_RECONCILE_INTERVAL"
	EnvStuckAfter        = "SLIPWAY_CATALOG_STUCK_AFTER"
	EnvUploadExpiry      = "SLIPWAY_CATALOG_UPLOAD_EXPIRY"
	EnvMaxVirtualSize    = "SLIPWAY_CATALOG_MAX_VIRTUAL_SIZE"
	EnvVerifyDigest      = "SLIPWAY_CATALOG_VERIFY_DIGEST"
	EnvConcurrency       = "SLIPWAY_CATALOG_CONCURRENCY"
	EnvUploadBucket      = "SLIPWAY_UPLOAD_BUCKET"
	EnvDefaultBucket     = "SLIPWAY_DATASTORE_DEFAULT_BUCKET"
	EnvFilesBucket       = "SLIPWAY_DATASTORE_FILES_BUCKET"
	EnvS3PublicEndpoint  = "SLIPWAY_S3_PUBLIC_ENDPOINT"
)

// ConfigFromEnv reads the catalog's configuration from the environment;
// unset variables keep the defaults (digest verification is on). The error
// names every variable that is wrong.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		User:         run.Env(EnvUser, DefaultUser),
		Group:        run.Env(EnvGroup, DefaultGroup),
		UploadBucket: run.Env(EnvUploadBucket, DefaultUploadBucket),
		IdentityDir:  run.Env(EnvIdentityDir, ""),

		S3PublicEndpoint: run.Env(EnvS3PublicEndpoint, ""),
	}
	var env run.EnvReader
	cfg.ConvertDeadline = env.Duration(EnvConvertDeadline, DefaultConvertDeadline)
	cfg.CommitDeadline = env.Duration(EnvCommitDeadline, DefaultCommitDeadline)
	cfg.ResolveDeadline = env.Duration(EnvResolveDeadline, DefaultResolveDeadline)
	cfg.BuildDeadline = env.Duration(EnvBuildDeadline, DefaultBuildDeadline)
	cfg.EncryptDeadline = env.Duration(EnvEncryptDeadline, DefaultEncryptDeadline)
	cfg.ReconcileInterval = env.Duration(EnvReconcileInterval, DefaultReconcileInterval)
	cfg.StuckAfter = env.Duration(EnvStuckAfter, DefaultStuckAfter)
	cfg.UploadExpiry = env.Duration(EnvUploadExpiry, DefaultUploadExpiry)
	cfg.VerifyDigest = env.Bool(EnvVerifyDigest, true)
	cfg.Concurrency = env.Int(EnvConcurrency, 1)
	if v := strings.TrimSpace(run.Env(EnvMaxVirtualSize, "")); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			env.Check(fmt.Errorf("%s=%q is not a positive number of bytes", EnvMaxVirtualSize, v))
		}
		cfg.MaxVirtualSize = n
	}
	ds := DefaultDatastores()
	ds[0].Bucket = run.Env(EnvDefaultBucket, ds[0].Bucket)
	ds[1].Bucket = run.Env(EnvFilesBucket, ds[1].Bucket)
	cfg.Datastores = ds
	loc, err := blob.LocationsFromEnv()
	env.Check(err)
	cfg.ImportBuckets = loc.ImportBuckets
	return cfg, env.Err()
}
