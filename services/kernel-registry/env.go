package kernelregistry

import (
	"errors"
	"strings"

	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
)

// Environment variables read by ConfigFromEnv.
const (
	EnvUploadBucket   = "SLIPWAY_UPLOAD_BUCKET"
	EnvFilesBucket    = "SLIPWAY_FILES_BUCKET"
	EnvFilesDatastore = "SLIPWAY_KERNEL_DATASTORE"
	EnvTempDir        = "SLIPWAY_TMPDIR"
	EnvInitrd         = "SLIPWAY_INITRD_INIT"
	EnvModules        = "SLIPWAY_INITRD_MODULES"
	EnvMaxDeliver     = "SLIPWAY_KERNEL_MAX_DELIVER"
)

// ConfigFromEnv reads the service's variables (see the README); unset ones
// keep New's defaults.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		UploadBucket:   run.Env(EnvUploadBucket, ""),
		FilesBucket:    run.Env(EnvFilesBucket, ""),
		FilesDatastore: run.Env(EnvFilesDatastore, ""),
		TempDir:        run.Env(EnvTempDir, ""),
		Initrd:         run.Env(EnvInitrd, ""),
	}
	for _, m := range strings.Split(run.Env(EnvModules, ""), ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modules = append(cfg.Modules, m)
		}
	}
	var errs []error
	var err error
	if cfg.MaxDeliver, err = run.EnvInt(EnvMaxDeliver, DefaultMaxDeliver); err != nil {
		errs = append(errs, err)
	}
	if cfg.JobDeadline, err = worker.JobDeadlineFromEnv(); err != nil {
		errs = append(errs, err)
	}
	return cfg, errors.Join(errs...)
}
