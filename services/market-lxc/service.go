package marketlxc

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
)

// ServiceName is the service's name on the bus.
const ServiceName = schemas.ServiceMarketLxc

// Preregistered are the seeds' marketplaces this service creates on its
// first start (onemarket list: 0 OpenNebula Public, 1 Linux Containers,
// 2 TurnKey Linux Containers), without their endpoints and monitoring.
var Preregistered = []market.Market{
	{ID: 0, Name: "OpenNebula Public", Mad: schemas.MarketMADOne},
	{ID: 1, Name: "Linux Containers", Mad: schemas.MarketMADLinuxcontainers},
	{ID: 2, Name: "TurnKey Linux Containers", Mad: schemas.MarketMADTurnkeylinux},
}

// Service is the marketplace core (package market) with this service's
// drivers.
type Service struct {
	core *market.Service
	cfg  Config
	// client is the drivers' one HTTP client: it dials through the
	// guard (SLIPWAY_FETCH_ALLOW), whatever the index says.
	client *http.Client
	log    *slog.Logger
}

// fetchTimeout bounds one index request of a driver (images.json is
// about 10 MB).
const fetchTimeout = 2 * time.Minute

// New builds the service on b, which must be market-lxc's bus.
func New(b *bus.Bus, cfg Config) *Service {
	cfg.defaults()
	s := &Service{cfg: cfg, client: cfg.Guard.Client(fetchTimeout), log: cfg.Logger}
	ds := market.Drivers{}
	for mad, build := range drivers {
		ds[mad] = build(s)
	}
	pre := make([]market.Market, len(Preregistered))
	for i, mk := range Preregistered {
		mk.Endpoint, mk.Monitoring = cfg.Endpoints[mk.Mad], !cfg.Offline
		pre[i] = mk
	}
	s.core = market.New(b, market.Config{
		Service:       ServiceName,
		Description:   "Slipway marketplaces of OpenNebula appliances, Linux Containers and TurnKey Linux",
		Drivers:       ds,
		Preregistered: pre,
		Commands:      s.commands(),
		Settings:      cfg.Settings,
	})
	return s
}

// Ready is closed once the service consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.core.Ready() }

// Run runs the service until ctx ends (see market.Service.Run).
func (s *Service) Run(ctx context.Context) error {
	if err := s.cfg.validate(); err != nil {
		return err
	}
	return s.core.Run(ctx)
}
