package marketdockerhub

import (
	"errors"
	"strings"

	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/run"
)

// Defaults of Config.
const (
	DefaultHubAPI          = "https://hub.docker.com"
	DefaultRefreshInterval = market.DefaultRefreshInterval
	DefaultUser            = market.DefaultUser
	DefaultKernel          = market.DefaultKernel
)

// Environment variables read by ConfigFromEnv.
const (
	EnvHubAPI          = "SLIPWAY_DOCKERHUB_API"
	EnvRefreshInterval = market.EnvRefreshInterval
	EnvDockerConfig    = "SLIPWAY_DOCKER_CONFIG"
	EnvMirrors         = "SLIPWAY_REGISTRY_MIRRORS"
	EnvHubMonitoring   = "SLIPWAY_DOCKERHUB_MONITORING"
	EnvMonitoring      = market.EnvMonitoring
	EnvUser            = market.EnvUser
	EnvKernel          = "SLIPWAY_DOCKERHUB_KERNEL"
)

// Config configures the service: its own settings and the marketplace
// services' common ones (market.Settings: refresh interval, user, kernel,
// guard of Hub's API, registries, their mirrors and token servers).
type Config struct {
	// HubAPI is the base URL of Docker Hub's API for the default
	// marketplace (default https://hub.docker.com). It only seeds the
	// marketplace record on first start; market-update changes it later.
	HubAPI string
	// HubOffline seeds the DockerHub marketplace with monitoring off, for
	// machines that cannot (or must not) reach Docker Hub: nothing is
	// listed until `market-update` switches it on. Imports by docker://
	// URL work either way. ConfigFromEnv sets it when
	// SLIPWAY_MARKET_MONITORING is off (every pre-registered marketplace)
	// or SLIPWAY_DOCKERHUB_MONITORING is false (this one).
	HubOffline bool
	// DockerConfig is the docker config.json with registry credentials
	// ("" for the standard places).
	DockerConfig string
	// Mirrors maps a registry host to the mirrors tried before it.
	Mirrors map[string][]string
	market.Settings
}

func (c *Config) defaults() {
	defaults.Fill(c, Config{HubAPI: DefaultHubAPI})
	c.Settings.Defaults()
	c.HubAPI = strings.TrimRight(c.HubAPI, "/")
}

// ConfigFromEnv reads the configuration from the environment; unset
// variables keep the defaults. SLIPWAY_REGISTRY_MIRRORS is
// "host=mirror1,mirror2;host2=mirror3"; SLIPWAY_FETCH_ALLOW opens
// addresses to Hub's API and registries (see package netguard).
func ConfigFromEnv() (Config, error) {
	var env run.EnvReader
	cfg := Config{
		HubAPI:       run.Env(EnvHubAPI, DefaultHubAPI),
		DockerConfig: run.Env(EnvDockerConfig, ""),
		Settings:     market.ReadSettings(&env, EnvKernel),
	}
	var err error
	cfg.HubOffline = !env.Bool(EnvHubMonitoring, true) || !env.Bool(EnvMonitoring, true)
	cfg.Mirrors, err = parseMirrors(run.Env(EnvMirrors, ""))
	env.Check(err)
	return cfg, env.Err()
}

func parseMirrors(s string) (map[string][]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	out := map[string][]string{}
	for entry := range strings.SplitSeq(s, ";") {
		host, list, ok := strings.Cut(strings.TrimSpace(entry), "=")
		if !ok || strings.TrimSpace(host) == "" || strings.TrimSpace(list) == "" {
			return nil, errors.New(EnvMirrors + `: want "host=mirror1,mirror2;host2=mirror3", got entry "` + entry + `"`)
		}
		for m := range strings.SplitSeq(list, ",") {
			if m = strings.TrimSpace(m); m != "" {
				out[strings.TrimSpace(host)] = append(out[strings.TrimSpace(host)], m)
			}
		}
	}
	return out, nil
}
