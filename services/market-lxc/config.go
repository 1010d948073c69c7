package marketlxc

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/pgpverify"
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
	// EnvTurnKeyKeyring is a file of armored OpenPGP public keys that
	// sign TurnKey's .hash documents; without it nothing TurnKey lists is
	// trusted.
	EnvTurnKeyKeyring = "SLIPWAY_MARKET_TURNKEY_KEYRING"
	// EnvLXCKeyring is a file of armored OpenPGP public keys that sign the
	// LXC download index (meta/1.0/index-system.asc) and each build's
	// SHA256SUMS.asc; with it, those signatures are checked.
	EnvLXCKeyring = "SLIPWAY_MARKET_LXC_KEYRING"
	// EnvPublicRoot is the directory every http marketplace's PUBLIC_DIR
	// must lie below (checkPublicDir); unset, no http marketplace can be
	// published into.
	EnvPublicRoot = "SLIPWAY_MARKET_PUBLIC_ROOT"
)

// Config configures the service: its own settings and the marketplace
// services' common ones (market.Settings: refresh interval, user, kernel,
// guard of the drivers' fetches).
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
	// TurnKeyKeyring verifies TurnKey's clearsigned .hash documents
	// (EnvTurnKeyKeyring); nil fails every turnkeylinux listing.
	TurnKeyKeyring *pgpverify.Keyring
	// LXCKeyring verifies the LXC download index and its builds'
	// SHA256SUMS (EnvLXCKeyring); nil trusts them as served over the
	// endpoint's HTTPS, as simplestreams' images.json is.
	LXCKeyring *pgpverify.Keyring
	// PublicRoot is the directory below which http marketplaces'
	// PUBLIC_DIRs lie (SLIPWAY_MARKET_PUBLIC_ROOT): a market-create or
	// app-create naming another directory is refused. Empty: http
	// marketplaces are only listed and imported from.
	PublicRoot string
	// Locations are the buckets (blob.LocationsFromEnv): s3 marketplaces
	// live in MarketBuckets, published images are read from the
	// datastores.
	Locations blob.Locations
	// Store is the service's S3 user (s3 marketplaces, the blobs of
	// published images); nil when it runs without S3, which refuses s3
	// marketplaces and publishing.
	Store *blob.Store
	market.Settings
}

func (c *Config) defaults() {
	c.Settings.Defaults()
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
	var env run.EnvReader
	var err error
	cfg := Config{Endpoints: map[schemas.MarketMAD]string{}, Settings: market.ReadSettings(&env, EnvKernel)}
	for mad, name := range endpointEnv {
		cfg.Endpoints[mad] = run.Env(name, "")
	}
	cfg.Offline = !env.Bool(market.EnvMonitoring, true)
	if path := run.Env(EnvTurnKeyKeyring, ""); path != "" {
		cfg.TurnKeyKeyring, err = readKeyring(EnvTurnKeyKeyring, path)
		env.Check(err)
	}
	if path := run.Env(EnvLXCKeyring, ""); path != "" {
		cfg.LXCKeyring, err = readKeyring(EnvLXCKeyring, path)
		env.Check(err)
	}
	cfg.PublicRoot = run.Env(EnvPublicRoot, "")
	cfg.Locations, err = blob.LocationsFromEnv()
	env.Check(err)
	env.Check(cfg.validate())
	return cfg, env.Err()
}

// validate checks the kernel and user names the templates quote, and that
// the endpoints are http(s) URLs as the Market schema wants them.
func (c Config) validate() error {
	if err := c.Settings.Validate(EnvKernel); err != nil {
		return err
	}
	if c.PublicRoot != "" && !filepath.IsAbs(c.PublicRoot) {
		return fmt.Errorf("%s=%q: want an absolute directory", EnvPublicRoot, c.PublicRoot)
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

// readKeyring reads the armored public keys of the file at path (at most
// pgpverify.MaxKeyring bytes), named by variable name.
func readKeyring(name, path string) (*pgpverify.Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, pgpverify.MaxKeyring+1))
	if err == nil && len(data) > pgpverify.MaxKeyring {
		err = fmt.Errorf("larger than %d bytes", pgpverify.MaxKeyring)
	}
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", name, path, err)
	}
	k, err := pgpverify.ReadKeyring(data)
	if err != nil {
		return nil, fmt.Errorf("%s=%s: %w", name, path, err)
	}
	return k, nil
}
