package market

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/defaults"
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
	// (market-dockerhub's resolve), by verb. Such a handler checks its
	// command itself (schemas.Validate) and refuses it as it sees fit.
	Commands map[string]bus.Handler
	// RefreshInterval is how often monitored marketplaces are listed
	// again (default 600s, OpenNebula's).
	RefreshInterval time.Duration
	// User owns the images and templates apps are imported as (when the
	// import has no user behind it) and the kernel templates name.
	User string
	// Kernel is the name of the KERNEL image (kernel-registry) the VM
	// templates of imported apps boot (default "kernel").
	Kernel string
	// Version is reported by the micro service (default "0.1.0").
	Version string
	Logger  *slog.Logger
}

func (c *Config) defaults() {
	defaults.Fill(c, Config{RefreshInterval: DefaultRefreshInterval, User: DefaultUser, Kernel: DefaultKernel,
		Version: "0.1.0", Logger: slog.Default()})
}

// owns reports whether the service owns mad.
func (c *Config) owns(mad schemas.MarketMAD) bool { return Owner(mad) == c.Service }

// Validate checks what the VM templates quote: the kernel's and the user's
// names go inside $FILE[IMAGE="…", IMAGE_UNAME="…"], which has no escapes.
// envKernel names the variable the kernel comes from, for the message.
func (c Config) Validate(envKernel string) error {
	var errs []error
	for _, v := range []struct{ what, env, value string }{
		{"kernel image name", envKernel, c.Kernel},
		{"user", EnvUser, c.User},
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
