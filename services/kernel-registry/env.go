package kernelregistry

import (
	"strings"

	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
)

// Environment variables read by ConfigFromEnv, besides worker.EnvTempDir
// and bus.EnvJobDeadline.
const (
	EnvUploadBucket   = "SLIPWAY_UPLOAD_BUCKET"
	EnvFilesBucket    = "SLIPWAY_FILES_BUCKET"
	EnvFilesDatastore = "SLIPWAY_KERNEL_DATASTORE"
	EnvInitrd         = "SLIPWAY_INITRD_INIT"
	EnvModules        = "SLIPWAY_INITRD_MODULES"
	EnvMaxDeliver     = "SLIPWAY_KERNEL_MAX_DELIVER"
)

// ConfigFromEnv reads the service's variables (see the README); unset ones
// keep New's defaults. The error names every variable that is wrong.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		UploadBucket:   run.Env(EnvUploadBucket, ""),
		FilesBucket:    run.Env(EnvFilesBucket, ""),
		FilesDatastore: run.Env(EnvFilesDatastore, ""),
		Initrd:         run.Env(EnvInitrd, ""),
	}
	for _, m := range strings.Split(run.Env(EnvModules, ""), ",") {
		if m = strings.TrimSpace(m); m != "" {
			cfg.Modules = append(cfg.Modules, m)
		}
	}
	var env run.EnvReader
	var err error
	cfg.TempDir = run.Env(worker.EnvTempDir, "")
	cfg.MaxDeliver = env.Int(EnvMaxDeliver, DefaultMaxDeliver)
	cfg.JobDeadline, err = worker.JobDeadlineFromEnv()
	env.Check(err)
	return cfg, env.Err()
}
