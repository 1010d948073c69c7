package market

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/servicemain"
	"github.com/slipway/slipway/schemas"
)

// Defaults of Config.
const (
	// DefaultRefreshInterval is OpenNebula's MONITORING_INTERVAL_MARKET.
	DefaultRefreshInterval = 600 * time.Second
	DefaultUser            = "oneadmin"
	DefaultKernel          = "kernel"
)

// Environment variables the marketplace services read (see their Wire).
const (
	// EnvRefreshInterval is how often monitored marketplaces are listed.
	EnvRefreshInterval = "SLIPWAY_MARKET_REFRESH"
	// EnvMonitoring "off" seeds every pre-registered marketplace with
	// monitoring off (tests, demos, machines without Internet access).
	EnvMonitoring = "SLIPWAY_MARKET_MONITORING"
	EnvUser       = "SLIPWAY_USER"
)

// FirstCreatedID is the ID of the first marketplace market-create makes:
// OpenNebula reserves the first 100 for its own (MarketPlacePool sets its
// last ID to 99 after creating them).
const FirstCreatedID = 100

// Settings are what every marketplace service is configured with in the
// same way; a service's Config embeds them.
type Settings struct {
	// RefreshInterval is how often monitored marketplaces are listed
	// again (default 600s, OpenNebula's).
	RefreshInterval time.Duration
	// User owns the images and templates apps are imported as (when the
	// import has no user behind it) and the kernel templates name.
	User string
	// Kernel is the name of the KERNEL image (kernel-registry) the VM
	// templates of imported apps boot (default "kernel").
	Kernel string
	// Guard says which addresses the drivers may fetch from: nil refuses
	// loopback, private and other special addresses (package netguard).
	Guard *netguard.Policy
	// Version is reported by the micro service (default "0.1.0").
	Version string
	Logger  *slog.Logger
}

// ReadSettings reads the settings from the environment into env (which
// collects what is wrong): SLIPWAY_MARKET_REFRESH, SLIPWAY_USER, the
// service's kernel variable envKernel and SLIPWAY_FETCH_ALLOW.
func ReadSettings(env *run.EnvReader, envKernel string) Settings {
	s := Settings{User: run.Env(EnvUser, DefaultUser), Kernel: run.Env(envKernel, DefaultKernel)}
	s.RefreshInterval = env.Duration(EnvRefreshInterval, DefaultRefreshInterval)
	var err error
	s.Guard, err = netguard.FromEnv()
	env.Check(err)
	env.Check(s.Validate(envKernel))
	return s
}

// Wired is s as a stack running the service wants it (servicemain.Deps):
// its owner of what is created, its guard of fetched addresses, its
// logger.
func (s Settings) Wired(d servicemain.Deps) Settings {
	s.User = d.Stack.UserOr(s.User)
	s.Guard = d.Stack.GuardOr(s.Guard)
	s.Logger = d.Logger
	return s
}

// Defaults fills the settings left unset.
func (s *Settings) Defaults() {
	defaults.Fill(s, Settings{RefreshInterval: DefaultRefreshInterval, User: DefaultUser, Kernel: DefaultKernel,
		Version: "0.1.0", Logger: slog.Default()})
}

// Validate checks what the VM templates quote: the kernel's and the user's
// names go inside $FILE[IMAGE="…", IMAGE_UNAME="…"], which has no escapes.
// envKernel names the variable the kernel comes from, for the message.
func (s Settings) Validate(envKernel string) error {
	var errs []error
	for _, v := range []struct{ what, env, value string }{
		{"kernel image name", envKernel, s.Kernel},
		{"user", EnvUser, s.User},
	} {
		if v.value == "" { // the default applies
			continue
		}
		if len(v.value) > 128 || strings.ContainsAny(v.value, `"[]\`) ||
			strings.ContainsFunc(v.value, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			errs = append(errs, fmt.Errorf("%s (%s) %q: want up to 128 characters without quotes, brackets, backslashes or control characters", v.what, v.env, v.value))
		}
	}
	return errors.Join(errs...)
}

// Config configures a marketplace service built on the core.
type Config struct {
	// Service is the service's name (schemas.ServiceMarketLxc, …): its
	// subjects, buckets and identity.
	Service string
	// Description is what the micro service says it is.
	Description string
	// Drivers implement the MADs the service owns (Owner); one without a
	// driver lists with NoDriverError recorded on the marketplace.
	Drivers Drivers
	// Preregistered are the marketplaces the service creates on its first
	// start, with their IDs (the seeds' onemarket list). Deleting one is
	// permanent. Their owner and bits are the core's.
	Preregistered []Market
	// Commands handle commands of the service beyond the shared contract
	// (market-dockerhub's resolve, market-lxc's app-create), by verb. Such
	// a handler checks its command itself (schemas.Validate) and refuses
	// it as it sees fit: with Reject, or by returning a refusal (Refuse,
	// or one of the core's checks such as UsableMarket's), which the core
	// then rejects.
	Commands map[string]bus.Handler
	Settings
}

// owns reports whether the service owns mad.
func (c *Config) owns(mad schemas.MarketMAD) bool { return Owner(mad) == c.Service }

// buckets are each marketplace service's own KV buckets: its state and
// the answers it remembers per command.
var buckets = map[string][2]string{
	schemas.ServiceMarketDockerhub: {schemas.BucketMarketDockerhub, schemas.BucketMarketDockerhubDedup},
	schemas.ServiceMarketLxc:       {schemas.BucketMarketLxc, schemas.BucketMarketLxcDedup},
}

// Owner is the marketplace service that owns mad ("" for none).
func Owner(mad schemas.MarketMAD) string {
	switch mad {
	case schemas.MarketMADDockerhub, schemas.MarketMADRegistry:
		return schemas.ServiceMarketDockerhub
	case schemas.MarketMADOne, schemas.MarketMADLinuxcontainers, schemas.MarketMADTurnkeylinux,
		schemas.MarketMADHTTP, schemas.MarketMADS3:
		return schemas.ServiceMarketLxc
	}
	return ""
}

// Services are the marketplace services, in the order the CLI asks them.
func Services() []string {
	return []string{schemas.ServiceMarketLxc, schemas.ServiceMarketDockerhub}
}
