package marketlxc

import (
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
)

// drivers is the one table of the service's drivers, by MAD: each entry
// builds the MAD's market.Driver from the service (its HTTP client through
// the guard, logger and configuration). A MAD the service owns without an
// entry here lists with market.NoDriverError ("no driver for MAD x in this
// build") recorded on the marketplace.
var drivers = map[schemas.MarketMAD]func(s *Service) market.Driver{
	schemas.MarketMADLinuxcontainers: func(s *Service) market.Driver { return lxcDriver{s} },
	schemas.MarketMADTurnkeylinux:    newTurnKeyDriver,
	schemas.MarketMADOne:             func(s *Service) market.Driver { return oneDriver{s} },
	schemas.MarketMADHTTP:            func(s *Service) market.Driver { return httpDriver{s} },
	schemas.MarketMADS3:              func(s *Service) market.Driver { return s3Driver{s} },
}

// The optional interfaces the drivers implement: a method that drifted
// from its interface would silently fall back to the core's behaviour.
var (
	_ market.Templater = oneDriver{}
	_ market.Composer  = oneDriver{}
	_ market.Assembler = oneDriver{}
	_ market.Templater = httpDriver{}
	_ market.Monitor   = httpDriver{}
	_ market.Templater = s3Driver{}
	_ market.Monitor   = s3Driver{}
)
