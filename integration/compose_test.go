package integration

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// TestComposeFile loads docker-compose.yml with the real compose-spec parser
// (no engine runs here) and checks the stack it describes is whole.
func TestComposeFile(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("slipway"),
		cli.WithProfiles([]string{"cli"}),
		cli.WithEnv(nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	project, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}

	for _, name := range []string{"nats", "minio", "minio-init", "catalog", "converter", "builder", "market-dockerhub", "kernel-registry", "crypto-luks", "launcher", "slipway"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %q missing", name)
		}
	}
	for _, v := range []string{"nats-data", "minio-data", "converter-tmp", "builder-tmp", "kernel-registry-tmp", "crypto-luks-tmp", "launcher-work"} {
		if _, ok := project.Volumes[v]; !ok {
			t.Errorf("volume %q missing", v)
		}
	}

	t.Run("nats runs JetStream on files with sync always", func(t *testing.T) {
		nats := project.Services["nats"]
		mountsVolume(t, nats, "nats-data", "/data")
		conf, err := os.ReadFile(filepath.Join(root, "deploy/nats/nats.conf"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"jetstream", "store_dir: /data", "sync_interval: always"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("deploy/nats/nats.conf lacks %q", want)
			}
		}
	})

	t.Run("services wait for their dependencies", func(t *testing.T) {
		dependsOn(t, project, "minio-init", "minio", types.ServiceConditionHealthy)
		for _, svc := range []string{"catalog", "converter", "builder"} {
			dependsOn(t, project, svc, "nats", types.ServiceConditionHealthy)
			dependsOn(t, project, svc, "minio-init", types.ServiceConditionCompletedSuccessfully)
		}
		dependsOn(t, project, "market-dockerhub", "nats", types.ServiceConditionHealthy)
	})

	t.Run("services are built from their own Dockerfiles", func(t *testing.T) {
		for _, svc := range []string{"catalog", "converter", "builder", "market-dockerhub", "kernel-registry", "crypto-luks", "launcher", "slipway"} {
			s := project.Services[svc]
			if s.Build == nil {
				t.Errorf("%s has no build section", svc)
				continue
			}
			want := filepath.Join("deploy", svc, "Dockerfile")
			if s.Build.Dockerfile != want {
				t.Errorf("%s dockerfile = %q, want %q", svc, s.Build.Dockerfile, want)
			}
			if _, err := os.Stat(filepath.Join(root, want)); err != nil {
				t.Errorf("%s: %v", svc, err)
			}
			env := s.Environment
			for _, k := range []string{"SLIPWAY_NATS_URL", "SLIPWAY_S3_ENDPOINT", "SLIPWAY_S3_ACCESS_KEY", "SLIPWAY_S3_SECRET_KEY"} {
				if v, ok := env[k]; !ok || v == nil || *v == "" {
					t.Errorf("%s lacks environment %s", svc, k)
				}
			}
		}
	})

	t.Run("bucket init creates every datastore bucket", func(t *testing.T) {
		cmd := strings.Join(project.Services["minio-init"].Command, " ")
		for _, b := range []string{"slipway-default", "slipway-files", "slipway-uploads"} {
			if !strings.Contains(cmd, b) {
				t.Errorf("minio-init does not create bucket %s", b)
			}
		}
	})
}

func mountsVolume(t *testing.T, s types.ServiceConfig, source, target string) {
	t.Helper()
	if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Source == source && v.Target == target
	}) {
		t.Errorf("%s does not mount volume %s at %s", s.Name, source, target)
	}
}

func dependsOn(t *testing.T, p *types.Project, svc, dep, condition string) {
	t.Helper()
	d, ok := p.Services[svc].DependsOn[dep]
	if !ok {
		t.Errorf("%s does not depend on %s", svc, dep)
		return
	}
	if d.Condition != condition {
		t.Errorf("%s depends on %s with condition %q, want %q", svc, dep, d.Condition, condition)
	}
}
