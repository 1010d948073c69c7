package catalog

import (
	"context"
	"fmt"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// endpoints are the catalog's queries, on <prefix>.api.catalog.<endpoint>,
// with the requests and replies of the contract (schemas/qry, schemas/rpl).
func (s *Service) endpoints() map[string]bus.QueryHandler {
	return bus.Endpoints(
		bus.Answer(schemas.QryCatalogList, s.queryList),
		bus.Answer(schemas.QryCatalogShow, s.queryShow),
		bus.Answer(schemas.QryCatalogDatastores, s.queryDatastores),
		bus.Answer(schemas.QryCatalogDatastoreShow, s.queryDatastoreShow),
		bus.Answer(schemas.QryCatalogUsers, s.queryUsers),
		bus.Answer(schemas.QryCatalogUser, s.queryUser),
		bus.Answer(schemas.QryCatalogGroups, s.queryGroups),
		bus.Answer(schemas.QryCatalogBlobURL, s.queryBlobURL),
		bus.Answer(schemas.QryCatalogBlobCreds, s.queryBlobCreds),
		bus.Answer(schemas.QryCatalogUploadCreds, s.queryUploadCreds),
		bus.Answer(schemas.QryCatalogUploadStart, s.queryUploadStart),
		bus.Answer(schemas.QryCatalogUploadParts, s.queryUploadParts),
		bus.Answer(schemas.QryCatalogUploadPresign, s.queryUploadPresign),
		bus.Answer(schemas.QryCatalogUploadComplete, s.queryUploadComplete),
		bus.Answer(schemas.QryCatalogUploadAbort, s.queryUploadAbort),
	)
}

// queryList answers the images that match every filter given, of those
// the asker may use (OpenNebula's `oneimage list`; the oneadmin group sees
// every image). The filter flag narrows them as OpenNebula's does: all
// (the default), mine, or group (mine and my groups').
func (s *Service) queryList(ctx context.Context, f schemas.CatalogListRequest) (schemas.CatalogListReply, error) {
	if f.State != "" && !State(f.State).Valid() {
		return nil, bus.Invalid(fmt.Errorf("state %q is not an image state (want one of %v)", f.State, States()))
	}
	c, err := s.askedBy(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	picked := c.filter(f.Filter, s.cfg.User, s.cfg.Group)
	out := make(schemas.CatalogListReply, 0, len(all))
	for _, img := range all {
		if c.visible(&img) && picked(&img) && (f.User == "" || img.User == f.User) &&
			(f.Datastore == "" || img.Datastore == f.Datastore) &&
			(f.State == "" || img.State == f.State) {
			out = append(out, img)
		}
	}
	return out, nil
}

// queryShow answers one image the asker may use, by ID or by name (among
// the asker's own images).
func (s *Service) queryShow(ctx context.Context, r schemas.CatalogShowRequest) (schemas.Image, error) {
	c, err := s.askedBy(ctx)
	if err != nil {
		return schemas.Image{}, err
	}
	owner, _ := c.owner(s.cfg.User, s.cfg.Group)
	img, err := bus.ByIDOrName("image", r.ID, r.Name,
		func(id int64) (*schemas.Image, error) {
			img, _, err := s.images.Get(ctx, id)
			return img, err
		},
		func(name string) (*schemas.Image, error) { return s.images.lookupName(ctx, owner, name) },
		ErrNotFound)
	if err != nil {
		return schemas.Image{}, err
	}
	if err := c.may(img, acl.Use, "show"); err != nil {
		return schemas.Image{}, bus.Forbidden(err)
	}
	return *img, nil
}
