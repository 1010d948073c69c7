package catalog

import (
	"context"
	"fmt"

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
	)
}

// queryList answers the images that match every filter given.
func (s *Service) queryList(ctx context.Context, f schemas.CatalogListRequest) (schemas.CatalogListReply, error) {
	if f.State != "" && !State(f.State).Valid() {
		return nil, bus.Invalid(fmt.Errorf("state %q is not an image state (want one of %v)", f.State, States()))
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(schemas.CatalogListReply, 0, len(all))
	for _, img := range all {
		if (f.User == "" || img.User == f.User) &&
			(f.Datastore == "" || img.Datastore == f.Datastore) &&
			(f.State == "" || img.State == f.State) {
			out = append(out, img)
		}
	}
	return out, nil
}

// queryShow answers one image, by ID or by name (of the catalog's user).
func (s *Service) queryShow(ctx context.Context, r schemas.CatalogShowRequest) (schemas.Image, error) {
	img, err := bus.ByIDOrName("image", r.ID, r.Name,
		func(id int64) (*schemas.Image, error) {
			img, _, err := s.images.Get(ctx, id)
			return img, err
		},
		func(name string) (*schemas.Image, error) { return s.images.lookupName(ctx, s.cfg.User, name) },
		ErrNotFound)
	if err != nil {
		return schemas.Image{}, err
	}
	return *img, nil
}

func (s *Service) queryDatastores(context.Context, schemas.CatalogDatastoresRequest) (schemas.CatalogDatastoresReply, error) {
	return s.cfg.Datastores, nil
}
