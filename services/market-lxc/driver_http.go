package marketlxc

import (
	"context"
	"errors"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/httpmarket"
	"github.com/slipway/slipway/services/market-lxc/published"
)

// httpDriver is OpenNebula's private http marketplace: BASE_URL (the
// record's endpoint) is read by httpmarket's Lister through the service's
// fetch guard; PUBLIC_DIR, when set, is where app-create publishes (a web
// server serves it at BASE_URL). A record without PUBLIC_DIR only lists
// and imports: another Slipway's marketplace, or any server of the
// layout.
type httpDriver struct{ s *Service }

func (d httpDriver) Validate(mk *market.Market) error {
	if mk.Endpoint == "" {
		return errors.New("BASE_URL (ENDPOINT) is required: the URL the marketplace is served at")
	}
	if _, err := published.ParseBaseURL(mk.Endpoint); err != nil {
		return err
	}
	if mk.Bucket != "" {
		return errors.New("BUCKET is an s3 marketplace's, not http's")
	}
	if mk.PublicDir != "" {
		if _, err := checkPublicDir(d.s.cfg.PublicRoot, mk.PublicDir); err != nil {
			return err
		}
	}
	return nil
}

func (d httpDriver) lister(mk market.Market) (*httpmarket.Lister, error) {
	return httpmarket.NewLister(mk.Endpoint, d.s.client)
}

func (d httpDriver) List(ctx context.Context, mk market.Market) ([]market.App, error) {
	l, err := d.lister(mk)
	if err != nil {
		return nil, err
	}
	return listApps(ctx, l)
}

// ImageCreate imports the blob from BASE_URL/apps/<name>/disk.<format>,
// derived again from the record and the app's name and format.
func (d httpDriver) ImageCreate(mk market.Market, app market.App, req market.AppImport) (schemas.ImageCreate, error) {
	rel, err := blobPath(app)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	u, err := blobURL(mk, rel)
	if err != nil {
		return schemas.ImageCreate{}, err
	}
	return diskImport(app, u, req)
}

// blobURL is the URL of the blob at rel below the marketplace's BASE_URL.
func blobURL(mk market.Market, rel string) (string, error) {
	base, err := published.ParseBaseURL(mk.Endpoint)
	if err != nil {
		return "", err
	}
	return published.Resolve(base, rel)
}

func (d httpDriver) VMTemplate(_ market.Market, app market.App, name string, disks []market.Disk) (string, error) {
	return privateTemplate(d.s, app, name, disks[0])
}

// Monitor reports PUBLIC_DIR's usage (TOTAL_MB the record's quota, else
// the file system's); a record without PUBLIC_DIR has no capacity here.
func (d httpDriver) Monitor(_ context.Context, mk market.Market) (market.Usage, error) {
	if mk.PublicDir == "" {
		return market.Usage{}, nil
	}
	p, err := d.publisher(mk)
	if err != nil {
		return market.Usage{}, err
	}
	u, err := p.Monitor()
	return monitorUsage(u), err
}

// publisher writes into the record's PUBLIC_DIR, checked and made.
func (d httpDriver) publisher(mk market.Market) (*httpmarket.Publisher, error) {
	if mk.PublicDir == "" {
		return nil, errors.New("it has no PUBLIC_DIR: it only lists what is served at its BASE_URL")
	}
	dir, err := d.s.publicDir(mk.PublicDir)
	if err != nil {
		return nil, err
	}
	return httpmarket.NewPublisher(dir, mk.QuotaMb)
}
