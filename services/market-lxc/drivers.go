package marketlxc

import (
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
)

// drivers is the one table of the service's drivers, by MAD: each entry
// builds the MAD's market.Driver from the service (its guard, logger and
// configuration). The index parsers (packages simplestreams, lxcindex,
// aplinfo, oneapp) plug in here:
//
//	schemas.MarketMADLinuxcontainers: func(s *Service) market.Driver { return lxcDriver{s} },
//
// where lxcDriver's List reads the marketplace's endpoint with the parser
// and returns one market.App per product (Name, Version, Source,
// Checksums, Kind rootfs, Arch/OS/Release/Variant), its ImageCreate the
// catalog's image-create of a rootfs (an https path, its checksums, the
// marketplace's IMAGE_SIZE_MB, FILESYSTEM and FORMAT), and, for one, a
// Templater returns the appliance's own VM template. A MAD the service
// owns without an entry here lists with market.NoDriverError ("no driver
// for MAD linuxcontainers in this build") recorded on the marketplace.
var drivers = map[schemas.MarketMAD]func(s *Service) market.Driver{
	schemas.MarketMADHTTP: func(s *Service) market.Driver { return httpDriver{s} },
	schemas.MarketMADS3:   func(s *Service) market.Driver { return s3Driver{s} },
}
