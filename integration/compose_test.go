package integration

import (
	"cmp"
	"context"
	"maps"
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
// TestComposeStack runs it.
func TestComposeFile(t *testing.T) {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	// No S3 secret is compiled in: without one compose refuses to load,
	// naming the variable.
	if _, err := tryLoadCompose(root, nil); err == nil || !strings.Contains(err.Error(), "SLIPWAY_S3_SECRET_KEY") {
		t.Errorf("docker-compose.yml without SLIPWAY_S3_SECRET_KEY: %v, want an error naming it", err)
	}
	project := loadCompose(t, root, nil)

	for _, name := range []string{"identity", "s3-keys", "nats", "minio", "catalog", "converter", "builder", "market-dockerhub", "market-lxc", "kernel-registry", "crypto-luks", "launcher", "dead-letter", "slipway", "console"} {
		if _, ok := project.Services[name]; !ok {
			t.Errorf("service %q missing", name)
		}
	}
	if len(project.Services) != 15 { // the web console made it 15
		t.Errorf("%d services, want 15: %v", len(project.Services), project.ServiceNames())
	}
	for _, v := range []string{"nats-data", "minio-data", "converter-tmp", "builder-tmp", "kernel-registry-tmp", "crypto-luks-tmp", "launcher-work", "market-public"} {
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
		for _, want := range []string{"jetstream", "store_dir: /data", "sync_interval: always",
			`include "secrets/auth.conf"`, `cert_file: "/etc/nats/secrets/server.crt"`, `key_file: "/etc/nats/secrets/server.key"`,
			"websocket {", "port: $SLIPWAY_NATS_WS_PORT"} {
			if !strings.Contains(string(conf), want) {
				t.Errorf("deploy/nats/nats.conf lacks %q", want)
			}
		}
	})

	// Each container mounts its own secrets (written by the identity
	// service, which every container waits for) and no one else's.
	t.Run("identity runs first and each container sees only its secrets", func(t *testing.T) {
		id := project.Services["identity"]
		if id.Build == nil || id.Build.Target != "slipway" || len(id.Command) < 3 || id.Command[0] != "identity" || id.Command[1] != "init" {
			t.Errorf("identity service: build %+v, command %v; want the slipway image running identity init", id.Build, id.Command)
		}
		mounts := map[string]string{"nats": "/etc/nats/secrets", "minio": "/certs", "slipway": "/run/slipway"}
		secrets := map[string]string{"slipway": "secrets-cli"}
		for name, s := range project.Services {
			if name == "identity" || name == "s3-keys" { // they write the secrets
				continue
			}
			dependsOn(t, project, name, "identity", types.ServiceConditionCompletedSuccessfully)
			want := cmp.Or(secrets[name], "secrets-"+name)
			mountsVolume(t, s, want, cmp.Or(mounts[name], "/run/slipway"))
			mountsVolume(t, id, want, "/secrets/"+strings.TrimPrefix(want, "secrets-"))
			for _, v := range s.Volumes {
				if strings.HasPrefix(v.Source, "secrets-") && v.Source != want {
					t.Errorf("%s mounts %s, another container's secrets", name, v.Source)
				}
			}
			if _, ok := project.Volumes[want]; !ok {
				t.Errorf("volume %s missing", want)
			}
		}
		if _, ok := project.Volumes["secrets-ca"]; !ok {
			t.Error("volume secrets-ca missing")
		}
		hasEnv(t, project, "catalog", "SLIPWAY_IDENTITY_DIR", "/run/slipway/identity")
		hasEnv(t, project, "slipway", "SLIPWAY_CREDS", "/run/slipway/oneadmin.creds")
		hasEnv(t, project, "dead-letter", "SLIPWAY_CREDS", "/run/slipway/nats.creds")
		if !slices.Contains(project.Services["minio"].Command, "--certs-dir") {
			t.Errorf("minio runs without --certs-dir: %v", project.Services["minio"].Command)
		}
	})

	// MinIO's root keys reach MinIO and the s3-keys step alone; each
	// service that keeps image data reads its own keys, which s3-keys
	// wrote into its secrets volume, and waits for them.
	t.Run("only MinIO and s3-keys hold the root keys", func(t *testing.T) {
		keys := project.Services["s3-keys"]
		if keys.Build == nil || keys.Build.Target != "slipway" || !slices.Equal(keys.Command, []string{"s3", "provision", "--per-service", "--dir", "/secrets"}) {
			t.Errorf("s3-keys: build %+v, command %v; want the slipway image running s3 provision --per-service", keys.Build, keys.Command)
		}
		dependsOn(t, project, "s3-keys", "identity", types.ServiceConditionCompletedSuccessfully)
		dependsOn(t, project, "s3-keys", "minio", types.ServiceConditionHealthy)
		for name, s := range project.Services {
			_, access := s.Environment["SLIPWAY_S3_ACCESS_KEY"]
			_, secret := s.Environment["SLIPWAY_S3_SECRET_KEY"]
			if (access || secret) && name != "s3-keys" {
				t.Errorf("%s is given MinIO's root keys", name)
			}
		}
		// market-lxc publishes into the marketplace buckets and reads the
		// blobs it publishes.
		mountsVolume(t, project.Services["market-lxc"], "market-public", "/var/lib/slipway/market-public")
		hasEnv(t, project, "market-lxc", "SLIPWAY_MARKET_PUBLIC_ROOT", "/var/lib/slipway/market-public")
		for _, svc := range []string{"catalog", "converter", "builder", "market-lxc", "kernel-registry", "crypto-luks", "launcher"} {
			dependsOn(t, project, svc, "s3-keys", types.ServiceConditionCompletedSuccessfully)
			mountsVolume(t, keys, "secrets-"+svc, "/secrets/"+svc)
			hasEnv(t, project, svc, "SLIPWAY_S3_KEYS_FILE", "/run/slipway/s3.json")
		}
	})

	t.Run("services wait for their dependencies", func(t *testing.T) {
		for _, svc := range []string{"catalog", "converter", "builder", "market-lxc", "kernel-registry", "crypto-luks", "launcher"} {
			dependsOn(t, project, svc, "nats", types.ServiceConditionHealthy)
			dependsOn(t, project, svc, "minio", types.ServiceConditionHealthy)
		}
		dependsOn(t, project, "market-dockerhub", "nats", types.ServiceConditionHealthy)
		dependsOn(t, project, "dead-letter", "nats", types.ServiceConditionHealthy)
		for _, svc := range []string{"catalog", "converter", "builder", "market-dockerhub", "market-lxc", "kernel-registry", "crypto-luks", "launcher", "dead-letter"} {
			dependsOn(t, project, "slipway", svc, types.ServiceConditionHealthy)
		}
	})

	t.Run("every service has a healthcheck and the host's network", func(t *testing.T) {
		for name, s := range project.Services {
			if s.NetworkMode != "host" {
				t.Errorf("%s: network_mode %q, want host", name, s.NetworkMode)
			}
			if name == "slipway" || name == "identity" || name == "s3-keys" { // one-off runs
				continue
			}
			if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 || s.HealthCheck.Test[0] != "CMD" {
				t.Errorf("%s: no exec-form healthcheck: %+v", name, s.HealthCheck)
			}
		}
	})

	t.Run("services are built from deploy/Dockerfile and probe themselves", func(t *testing.T) {
		dockerfile, err := os.ReadFile(filepath.Join(root, "deploy", "Dockerfile"))
		if err != nil {
			t.Fatal(err)
		}
		targets := map[string]string{"dead-letter": "slipway"}
		for _, svc := range []string{"catalog", "converter", "builder", "market-dockerhub", "market-lxc", "kernel-registry", "crypto-luks", "launcher", "dead-letter", "slipway"} {
			s := project.Services[svc]
			if s.Build == nil {
				t.Errorf("%s has no build section", svc)
				continue
			}
			target := cmp.Or(targets[svc], svc)
			if s.Build.Dockerfile != "deploy/Dockerfile" || s.Build.Target != target || s.Build.Network != "host" {
				t.Errorf("%s builds %q target %q network %q, want deploy/Dockerfile target %q network host", svc, s.Build.Dockerfile, s.Build.Target, s.Build.Network, target)
			}
			if !strings.Contains(string(dockerfile), " AS "+target+"\n") {
				t.Errorf("deploy/Dockerfile has no stage %q", target)
			}
			env := s.Environment
			for _, k := range []string{"SLIPWAY_NATS_URL", "SLIPWAY_NATS_CREDS", "SLIPWAY_CA", "SLIPWAY_S3_ENDPOINT", "SLIPWAY_S3_KEYS_FILE", "SLIPWAY_HEALTH_ADDR"} {
				if v, ok := env[k]; !ok || v == nil || *v == "" {
					t.Errorf("%s lacks environment %s", svc, k)
				}
			}
			if svc == "slipway" {
				continue
			}
			want := []string{"CMD", "/usr/local/bin/" + svc, "-healthcheck"}
			if svc == "dead-letter" {
				want = []string{"CMD", "/usr/local/bin/slipway", "dead-letter", "--healthcheck"}
			}
			if s.HealthCheck == nil || !slices.Equal(s.HealthCheck.Test, want) {
				t.Errorf("%s healthcheck %v, want %v", svc, s.HealthCheck, want)
			}
		}
	})

	t.Run("images and bases are variables defaulting to upstream", func(t *testing.T) {
		if got := project.Services["nats"].Image; got != "nats:2.12-alpine" {
			t.Errorf("nats image %q", got)
		}
		if got := project.Services["minio"].Image; !strings.HasPrefix(got, "minio/minio:RELEASE.") {
			t.Errorf("minio image %q", got)
		}
		args := project.Services["catalog"].Build.Args
		for k, want := range map[string]string{"GO_IMAGE": "golang:1.26-bookworm", "DEBIAN_IMAGE": "debian:bookworm-slim", "STATIC_IMAGE": "gcr.io/distroless/static-debian12:nonroot"} {
			if v := args[k]; v == nil || *v != want {
				t.Errorf("build arg %s = %v, want %s", k, v, want)
			}
		}
		local := loadCompose(t, root, map[string]string{
			"NATS_IMAGE": "local/nats", "MINIO_IMAGE": "local/minio", "GO_IMAGE": "local/go",
			"DEBIAN_IMAGE": "local/debian", "STATIC_IMAGE": "local/static", "SLIPWAY_NATS_PORT": "14222",
		})
		if local.Services["nats"].Image != "local/nats" || local.Services["minio"].Image != "local/minio" {
			t.Errorf("images do not follow NATS_IMAGE and MINIO_IMAGE: %q %q", local.Services["nats"].Image, local.Services["minio"].Image)
		}
		largs := local.Services["launcher"].Build.Args
		for k, want := range map[string]string{"GO_IMAGE": "local/go", "DEBIAN_IMAGE": "local/debian", "STATIC_IMAGE": "local/static"} {
			if v := largs[k]; v == nil || *v != want {
				t.Errorf("build arg %s = %v, want %s", k, v, want)
			}
		}
		hasEnv(t, local, "catalog", "SLIPWAY_NATS_URL", "tls://127.0.0.1:14222") // follows SLIPWAY_NATS_PORT
		for name, s := range project.Services {
			if strings.Contains(s.Image, "minio/mc") {
				t.Errorf("%s uses %s: the catalog creates the buckets", name, s.Image)
			}
		}
	})
}

// loadCompose loads docker-compose.yml (every profile) with env as the
// whole environment.
func loadCompose(t *testing.T, root string, env map[string]string) *types.Project {
	t.Helper()
	env = maps.Clone(env)
	if env == nil {
		env = map[string]string{}
	}
	env["SLIPWAY_S3_SECRET_KEY"] = cmp.Or(env["SLIPWAY_S3_SECRET_KEY"], "a-test-root-secret")
	project, err := tryLoadCompose(root, env)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return project
}

// tryLoadCompose loads docker-compose.yml with env as the whole environment.
func tryLoadCompose(root string, env map[string]string) (*types.Project, error) {
	var envList []string
	for k, v := range env {
		envList = append(envList, k+"="+v)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithName("slipway"),
		cli.WithProfiles([]string{"cli"}),
		cli.WithEnv(envList),
	)
	if err != nil {
		return nil, err
	}
	return opts.LoadProject(context.Background())
}

func mountsVolume(t *testing.T, s types.ServiceConfig, source, target string) {
	t.Helper()
	if !slices.ContainsFunc(s.Volumes, func(v types.ServiceVolumeConfig) bool {
		return v.Source == source && v.Target == target
	}) {
		t.Errorf("%s does not mount volume %s at %s", s.Name, source, target)
	}
}

// hasEnv checks that service svc of p is given key=want.
func hasEnv(t *testing.T, p *types.Project, svc, key, want string) {
	t.Helper()
	if v := p.Services[svc].Environment[key]; v == nil || *v != want {
		t.Errorf("%s's %s = %v, want %s", svc, key, v, want)
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
