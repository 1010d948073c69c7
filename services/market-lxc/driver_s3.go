package marketlxc

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/s3market"
)

// s3Driver is OpenNebula's private s3 marketplace. OpenNebula's template
// carries AWS keys and any bucket; Slipway takes no keys from a template:
// the service uses its own S3 user, whose policy (package s3iam) allows
// only the operator's marketplace buckets (SLIPWAY_MARKET_BUCKETS,
// default slipway-market), so BUCKET must be one of them. The marketplace
// is the bucket's root, in package published's layout; two records naming
// one bucket are one marketplace (a second Slipway's, or a read-only
// record). The converter reads the blobs for imports: market buckets are
// import buckets (blob.LocationsFromEnv).
type s3Driver struct{ s *Service }

func (d s3Driver) Validate(mk *market.Market) error {
	switch {
	case mk.Bucket == "":
		return errors.New("BUCKET is required")
	case !d.s.cfg.Locations.IsMarketBucket(mk.Bucket):
		return fmt.Errorf("BUCKET %q is not a marketplace bucket of this Slipway (%s: %s)", mk.Bucket,
			blob.EnvMarketBuckets, strings.Join(d.s.cfg.Locations.MarketBuckets, ", "))
	case mk.Endpoint != "":
		return errors.New("ENDPOINT is not used by s3 marketplaces: the service reaches S3 with its own user")
	case mk.PublicDir != "":
		return errors.New("PUBLIC_DIR is an http marketplace's, not s3's")
	case d.s.cfg.Store == nil:
		return errors.New("this market-lxc runs without S3")
	}
	return nil
}

// market is the record's marketplace in S3 (revalidating the bucket: a
// record may predate a change of SLIPWAY_MARKET_BUCKETS).
func (d s3Driver) market(mk market.Market) (*s3market.Market, error) {
	if err := d.Validate(&mk); err != nil {
		return nil, err
	}
	return s3market.New(d.s.cfg.Store, mk.Bucket, "", mk.QuotaMb)
}

func (d s3Driver) List(ctx context.Context, mk market.Market) ([]market.App, error) {
	m, err := d.market(mk)
	if err != nil {
		return nil, err
	}
	return listApps(ctx, m)
}

// ImageCreate imports s3://BUCKET/apps/<name>/disk.<format>, derived again
// from the record and the app's name and format.
func (d s3Driver) ImageCreate(mk market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	if err := d.Validate(&mk); err != nil {
		return schemas.ImageCreate{}, err
	}
	rel, err := blobPath(app)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	return diskImport(app, blob.URL(mk.Bucket, rel), req)
}

func (d s3Driver) VMTemplate(_ market.Market, app market.App, name string, disks []market.Disk) (string, error) {
	return privateTemplate(d.s, app, name, disks[0])
}

func (d s3Driver) Monitor(ctx context.Context, mk market.Market) (market.Usage, error) {
	m, err := d.market(mk)
	if err != nil {
		return market.Usage{}, err
	}
	u, err := m.Monitor(ctx)
	return monitorUsage(u), err
}
