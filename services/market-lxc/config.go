package marketlxc

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/schemas"
)

// Default endpoints of the pre-registered marketplaces: the real public
// ones, as OpenNebula's drivers read them.
const (
	DefaultOneEndpoint     = "https://marketplace.opennebula.io"
	DefaultLXCEndpoint     = "https://images.linuxcontainers.org"
	DefaultTurnKeyEndpoint = "https://mirror.turnkeylinux.org/turnkeylinux/images/proxmox"
	DefaultKernel          = market.DefaultKernel
)

// Environment variables read by ConfigFromEnv, besides the core's
// (SLIPWAY_MARKET_REFRESH, SLIPWAY_MARKET_MONITORING, SLIPWAY_USER).
const (
	EnvOneEndpoint     = "SLIPWAY_MARKET_ONE_ENDPOINT"
	EnvLXCEndpoint     = "SLIPWAY_MARKET_LXC_ENDPOINT"
	EnvTurnKeyEndpoint = "SLIPWAY_MARKET_TURNKEY_ENDPOINT"
	EnvKernel          = "SLIPWAY_MARKET_LXC_KERNEL"
)

// Config configures the service.
type Config struct {
	// Endpoints of the pre-registered marketplaces by MAD (one,
	// linuxcontainers, turnkeylinux); they only seed the records on
	// first start, market-update changes them later. Tests point them
	// at loopback fakes.
	Endpoints map[schemas.MarketMAD]string
	// Offline seeds the pre-registered marketplaces with monitoring off
	// (SLIPWAY_MARKET_MONITORING=off): nothing is listed until
	// market-update switches it on.
	Offline bool
	// RefreshInterval is how often monitored marketplaces are listed
	// again (default 600s, OpenNebula's).
	RefreshInterval time.Duration
	// User owns the templates' kernel (and the disk before an import).
	User string
	// Kernel is the name of the KERNEL image the VM templates boot.
	Kernel string
	// Guard says which addresses the drivers may fetch from: nil refuses
	// loopback, private and other special addresses (package netguard);
	// ConfigFromEnv reads SLIPWAY_FETCH_ALLOW.
	Guard   *netguard.Policy
	Version string
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	defaults.Fill(c, Config{RefreshInterval: market.DefaultRefreshInterval, User: market.DefaultUser,
		Kernel: DefaultKernel, Version: "0.1.0", Logger: slog.Default()})
	ep := map[schemas.MarketMAD]string{schemas.MarketMADOne: DefaultOneEndpoint,
		schemas.MarketMADLinuxcontainers: DefaultLXCEndpoint, schemas.MarketMADTurnkeylinux: DefaultTurnKeyEndpoint}
	for mad, u := range c.Endpoints {
		if u != "" {
			ep[mad] = strings.TrimRight(u, "/")
		}
	}
	c.Endpoints = ep
}

// ConfigFromEnv reads the configuration from the environment; unset
// variables keep the defaults.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		Endpoints: map[schemas.MarketMAD]string{},
		User:      run.Env(market.EnvUser, market.DefaultUser),
		Kernel:    run.Env(EnvKernel, DefaultKernel),
	}
	for mad, name := range endpointEnv {
		cfg.Endpoints[mad] = run.Env(name, "")
	}
	var env run.EnvReader
	var err error
	cfg.Offline = !env.Bool(market.EnvMonitoring, true)
	cfg.RefreshInterval = env.Duration(market.EnvRefreshInterval, market.DefaultRefreshInterval)
	cfg.Guard, err = netguard.FromEnv()
	env.Check(err)
	env.Check(cfg.validate())
	return cfg, env.Err()
}

// validate checks the kernel and user names the templates quote, and that
// the endpoints are http(s) URLs as the Market schema wants them.
func (c Config) validate() error {
	if err := (market.Config{User: c.User, Kernel: c.Kernel}).Validate(EnvKernel); err != nil {
		return err
	}
	for mad, u := range c.Endpoints {
		if u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("%s=%q (endpoint of the pre-registered %s marketplace): want an http(s):// URL", endpointEnv[mad], u, mad)
		}
	}
	return nil
}

// endpointEnv names the variable of each pre-registered endpoint.
var endpointEnv = map[schemas.MarketMAD]string{schemas.MarketMADOne: EnvOneEndpoint,
	schemas.MarketMADLinuxcontainers: EnvLXCEndpoint, schemas.MarketMADTurnkeylinux: EnvTurnKeyEndpoint}
