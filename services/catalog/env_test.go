package catalog

import (
	"strings"
	"testing"
	"time"
)

func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvUser, "alice")
	t.Setenv(EnvConvertDeadline, "90m")
	t.Setenv(EnvDefaultBucket, "disks")
	t.Setenv(EnvBuildDeadline, "3h")
	cfg, err := ConfigFromEnv()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.User != "alice" || cfg.Group != DefaultGroup || cfg.ConvertDeadline != 90*time.Minute ||
		!cfg.VerifyDigest || cfg.Datastores[0].Bucket != "disks" || cfg.Datastores[1].Bucket != "slipway-files" ||
		cfg.UploadBucket != DefaultUploadBucket || cfg.BuildDeadline != 3*time.Hour || cfg.ResolveDeadline != DefaultResolveDeadline {
		t.Fatalf("config = %+v", cfg)
	}
	t.Setenv(EnvCommitDeadline, "soon")
	t.Setenv(EnvMaxVirtualSize, "-1")
	_, err = ConfigFromEnv()
	if err == nil || !strings.Contains(err.Error(), EnvCommitDeadline) || !strings.Contains(err.Error(), EnvMaxVirtualSize) {
		t.Fatalf("bad variables: %v", err)
	}
}
