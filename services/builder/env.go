package builder

import (
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/worker"
)

// Environment variables read by ConfigFromEnv, besides those every worker
// reads (worker.ConfigFromEnv).
const (
	EnvGuestInit          = "SLIPWAY_GUEST_INIT"
	EnvRegistryMirrors    = "SLIPWAY_REGISTRY_MIRRORS"
	EnvRegistryInsecure   = "SLIPWAY_REGISTRY_INSECURE"
	EnvDockerConfig       = "SLIPWAY_DOCKER_CONFIG"
	EnvConcurrency        = "SLIPWAY_BUILDER_CONCURRENCY"
	EnvParallelLayerPulls = "SLIPWAY_BUILDER_PARALLEL_PULLS"
	EnvExt4Writer         = "SLIPWAY_BUILDER_EXT4_WRITER"
)

// ConfigFromEnv reads the builder's variables (see the README); unset
// ones keep New's defaults. Registry credentials come from the standard
// docker config.json ($DOCKER_CONFIG/config.json, else
// ~/.docker/config.json) unless SLIPWAY_DOCKER_CONFIG names a file.
func ConfigFromEnv() (Config, error) {
	var env run.EnvReader
	var err error
	cfg := Config{GuestInit: run.Env(EnvGuestInit, "")}
	cfg.Config, err = worker.ConfigFromEnv(EnvConcurrency)
	env.Check(err)
	if cfg.Registry.Mirrors, err = ParseMirrors(os.Getenv(EnvRegistryMirrors)); err != nil {
		env.Check(fmt.Errorf("%s: %w", EnvRegistryMirrors, err))
	}
	cfg.InsecureRegistries = splitList(os.Getenv(EnvRegistryInsecure), ",")
	cfg.Registry.DockerConfig = run.Env(EnvDockerConfig, "")
	cfg.Registry.Guard, err = netguard.FromEnv()
	env.Check(err)
	cfg.Registry.Parallelism = env.Int(EnvParallelLayerPulls, 0)
	cfg.Locations, err = blob.LocationsFromEnv()
	env.Check(err)
	switch cfg.Ext4Writer = run.Env(EnvExt4Writer, Ext4WriterNative); cfg.Ext4Writer {
	case Ext4WriterNative, Ext4WriterMkfs:
	default:
		env.Check(fmt.Errorf("%s=%q: want %s or %s", EnvExt4Writer, cfg.Ext4Writer, Ext4WriterNative, Ext4WriterMkfs))
	}
	return cfg, env.Err()
}

// ParseMirrors parses "registry=mirror[,mirror…][;registry=…]", e.g.
// "docker.io=mirror.local:5000,10.0.0.9:5000;ghcr.io=ghcr-cache.local".
func ParseMirrors(s string) (map[string][]string, error) {
	out := map[string][]string{}
	for _, entry := range splitList(s, ";") {
		reg, list, ok := strings.Cut(entry, "=")
		reg = strings.TrimSpace(reg)
		mirrors := splitList(list, ",")
		if !ok || reg == "" || len(mirrors) == 0 {
			return nil, fmt.Errorf("%q: want registry=mirror[,mirror…]", entry)
		}
		out[reg] = append(out[reg], mirrors...)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

func splitList(s, sep string) []string {
	var out []string
	for _, f := range strings.Split(s, sep) {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// insecure reports whether the registry of ref may be reached over plain
// HTTP. Loopback and private addresses always may (go-containerregistry's
// rule); others only when listed in Config.InsecureRegistries.
func (s *Service) insecure(ref string) bool {
	if len(s.cfg.InsecureRegistries) == 0 {
		return false
	}
	r, err := name.ParseReference(ref, name.WeakValidation)
	if err != nil {
		return false
	}
	reg := r.Context().RegistryStr()
	return slices.Contains(s.cfg.InsecureRegistries, reg) ||
		(reg == name.DefaultRegistry && slices.Contains(s.cfg.InsecureRegistries, "docker.io"))
}
