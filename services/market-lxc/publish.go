package marketlxc

// Publishing into OpenNebula's private marketplaces (onemarketapp create
// and delete): market-lxc's own commands app-create and app-delete. The
// permission checks are the core's (UsableMarket, CatalogImage,
// MayManageApp); the layout and its writers are packages published,
// httpmarket and s3market.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/published"
)

// DefaultAppVersion is an app's VERSION when app-create gives none.
const DefaultAppVersion = "1.0"

// publishable are the image states whose blob is settled: a persistent
// image in use may be written by its VM.
var publishable = []schemas.ImageState{schemas.ImageStateReady, schemas.ImageStateUsed}

// commands are the service's commands beyond the shared contract.
func (s *Service) commands() map[string]bus.Handler {
	return map[string]bus.Handler{
		schemas.CommandMarketLxcAppCreate: s.appCreate,
		schemas.CommandMarketLxcAppDelete: s.appDelete,
	}
}

// decodeCommand checks m against its schema and decodes it; what does not
// fit is a refusal.
func decodeCommand(m *bus.Msg, v any) error {
	if err := schemas.Validate(schemas.KindCommand, ServiceName, m.Name, m.Data); err != nil {
		return market.Refuse(err)
	}
	if err := m.Decode(v); err != nil {
		return market.Refuse(err)
	}
	return nil
}

// privateMarket is the marketplace a publish or delete names, if the
// sender may use it and it is a private one.
func (s *Service) privateMarket(ctx context.Context, m *bus.Msg, id int64) (market.Market, market.Sender, error) {
	mk, from, err := s.core.UsableMarket(ctx, m, id)
	if err != nil {
		return mk, from, err
	}
	if mk.Mad != schemas.MarketMADHTTP && mk.Mad != schemas.MarketMADS3 {
		return mk, from, market.Refuse(fmt.Errorf("marketplace %d (%s) is of MAD %s: apps are published only into private marketplaces (http, s3)", mk.ID, mk.Name, mk.Mad))
	}
	return mk, from, nil
}

// appCreate publishes an image: the sender needs use of the marketplace
// and of the image; the blob is read from the datastore with the
// service's S3 user and checked against the catalog's size and sha256 on
// the way; the marketplace is then listed again and app-created reports
// the app.
func (s *Service) appCreate(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketAppCreate
	if err := decodeCommand(m, &req); err != nil {
		return err
	}
	mk, from, err := s.privateMarket(ctx, m, req.MarketID)
	if err != nil {
		return err
	}
	img, err := s.core.CatalogImage(ctx, from, req.ImageID, "publish")
	if err != nil {
		return err
	}
	app, err := s.appOf(req, img, from)
	if err != nil {
		return market.Refuse(err)
	}
	bucket, key, err := blob.ParseURL(img.Source)
	if err != nil {
		return market.Refuse(fmt.Errorf("image %d: %w", img.ID, err))
	}
	done, err := s.publish(ctx, mk, app, bucket, key)
	switch {
	case errors.Is(err, published.ErrExists):
		done, err = s.republished(ctx, mk, app, err)
	case errors.Is(err, published.ErrBlobMismatch):
		// The datastore's blob is not what the catalog recorded: the
		// same bytes would be read again.
		err = market.Refuse(bus.WithCode(schemas.CodeInvalidInput, fmt.Errorf("marketplace %d (%s): image %d: %w", mk.ID, mk.Name, img.ID, err)))
	}
	if err != nil {
		return err
	}
	return s.created(ctx, m, mk, done, img.ID)
}

// appOf is the app an image is published as: its blob's format, size and
// sha256 from the catalog's record, which the writers check the bytes
// against.
func (s *Service) appOf(req schemas.MarketAppCreate, img schemas.Image, from market.Sender) (published.App, error) {
	switch {
	case !slices.Contains(publishable, img.State):
		return published.App{}, fmt.Errorf("image %d is %s: only a READY image (or one in use, not persistent) is published", img.ID, img.State)
	case img.Source == "" || img.SHA256 == "" || img.StoredSize <= 0:
		return published.App{}, fmt.Errorf("image %d has no blob with a size and sha256 recorded", img.ID)
	}
	if err := s.cfg.Locations.CheckImageBlob(img.Source); err != nil {
		return published.App{}, fmt.Errorf("image %d: %w", img.ID, err)
	}
	if err := published.ValidateFormat(string(img.Format)); err != nil {
		return published.App{}, fmt.Errorf("image %d: %w (an encrypted image is not published)", img.ID, err)
	}
	version, desc := req.Version, req.Description
	if version == "" {
		version = DefaultAppVersion
	}
	if desc == "" {
		desc = img.Description
	}
	publisher := from.Name()
	if publisher == "" {
		publisher = s.cfg.User
	}
	return published.App{Name: req.Name, Version: version, Format: string(img.Format), Size: img.StoredSize,
		VirtualSize: img.Size, SHA256: img.SHA256, Description: desc, Publisher: publisher, VMTemplate: req.VMTemplate}, nil
}

// publish writes app into mk with the blob at bucket/key: a server-side
// copy into an s3 marketplace, a stream into an http one's PUBLIC_DIR.
func (s *Service) publish(ctx context.Context, mk market.Market, app published.App, bucket, key string) (published.App, error) {
	if s.cfg.Store == nil {
		return app, market.Refuse(errors.New("this market-lxc runs without S3: it cannot read image blobs"))
	}
	switch mk.Mad {
	case schemas.MarketMADS3:
		sm, err := s3Driver{s}.market(mk)
		if err != nil {
			return app, market.Refuse(fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, err))
		}
		return sm.PublishCopy(ctx, app, bucket, key)
	default:
		p, err := httpDriver{s}.publisher(mk)
		if err != nil {
			return app, market.Refuse(fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, err))
		}
		rc, _, err := s.cfg.Store.Get(ctx, bucket, key)
		if err != nil {
			return app, err
		}
		defer rc.Close()
		return p.Publish(ctx, app, rc)
	}
}

// republished tells a redelivered app-create (the same blob by the same
// publisher, already in the index) from a taken name, which is refused.
func (s *Service) republished(ctx context.Context, mk market.Market, app published.App, exists error) (published.App, error) {
	apps, err := s.index(ctx, mk)
	if err != nil {
		return app, err
	}
	for _, a := range apps {
		if a.Name == app.Name && a.SHA256 == app.SHA256 && a.Publisher == app.Publisher {
			return a, nil
		}
	}
	return app, market.Refuse(bus.WithCode(schemas.CodeConflict, fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, exists)))
}

// index is what mk's index holds, read where the service writes it: the
// bucket, or PUBLIC_DIR (BASE_URL may not be reachable from here).
func (s *Service) index(ctx context.Context, mk market.Market) ([]published.App, error) {
	if mk.Mad == schemas.MarketMADS3 {
		sm, err := s3Driver{s}.market(mk)
		if err != nil {
			return nil, market.Refuse(err)
		}
		entries, err := sm.List(ctx)
		apps := make([]published.App, len(entries))
		for i, e := range entries {
			apps[i] = e.App
		}
		return apps, err
	}
	p, err := httpDriver{s}.publisher(mk)
	if err != nil {
		return nil, market.Refuse(fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, err))
	}
	ix, err := p.Index()
	if err != nil {
		return nil, err
	}
	return ix.Apps, nil
}

// created lists mk again, so that the app is there to import, and reports
// app-created.
func (s *Service) created(ctx context.Context, m *bus.Msg, mk market.Market, app published.App, imageID int64) error {
	ev := schemas.MarketAppCreated{MarketID: mk.ID, App: app.Name, ImageID: imageID, Size: app.Size, SHA256: app.SHA256}
	rel := published.BlobPath(app.Name, app.Format)
	var err error
	if mk.Mad == schemas.MarketMADS3 {
		ev.URL = blob.URL(mk.Bucket, rel)
	} else if ev.URL, err = blobURL(mk, rel); err != nil {
		return err
	}
	if _, err := s.core.Relist(ctx, m, mk.ID); err != nil {
		return err
	}
	if a, err := s.core.App(ctx, mk.ID, app.Name); err == nil {
		ev.AppID = &a.ID
	}
	_, err = s.core.Bus().Event(ctx, schemas.EventMarketLxcAppCreated, strconv.FormatInt(mk.ID, 10), ev,
		market.CausedBy(m.Envelope, schemas.EventMarketLxcAppCreated)...)
	return err
}

// appDelete removes a published app: its index entry, then its files or
// objects, then the service's record of it. Its publisher or an
// administrator may.
func (s *Service) appDelete(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketAppDelete
	if err := decodeCommand(m, &req); err != nil {
		return err
	}
	mk, from, err := s.privateMarket(ctx, m, req.MarketID)
	if err != nil {
		return err
	}
	publisher, found, err := s.publisherOf(ctx, mk, req.App)
	if err != nil {
		return err
	}
	if found || m.Delivered <= 1 { // a redelivery finds its work done
		if err := from.MayManageApp(req.App, publisher); err != nil {
			return err
		}
	}
	if err := s.unpublish(ctx, mk, req.App); err != nil {
		return err
	}
	if err := s.core.DropApp(ctx, mk.ID, req.App); err != nil {
		return err
	}
	_, err = s.core.Bus().Event(ctx, schemas.EventMarketLxcAppDeleted, strconv.FormatInt(mk.ID, 10),
		schemas.MarketAppDeleted{MarketID: mk.ID, App: req.App}, market.CausedBy(m.Envelope, schemas.EventMarketLxcAppDeleted)...)
	return err
}

// publisherOf is who published app name in mk, as its index says.
func (s *Service) publisherOf(ctx context.Context, mk market.Market, name string) (string, bool, error) {
	apps, err := s.index(ctx, mk)
	if err != nil {
		return "", false, err
	}
	for _, a := range apps {
		if a.Name == name {
			return a.Publisher, true, nil
		}
	}
	return "", false, nil
}

// unpublish deletes app name from mk's files or objects.
func (s *Service) unpublish(ctx context.Context, mk market.Market, name string) error {
	var del interface {
		Delete(ctx context.Context, name string) error
	}
	var err error
	if mk.Mad == schemas.MarketMADS3 {
		del, err = s3Driver{s}.market(mk)
	} else {
		del, err = httpDriver{s}.publisher(mk)
	}
	if err != nil {
		return market.Refuse(fmt.Errorf("marketplace %d (%s): %w", mk.ID, mk.Name, err))
	}
	return del.Delete(ctx, name)
}
