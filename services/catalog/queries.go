package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// Query endpoints, on <prefix>.api.catalog.<endpoint>.
const (
	QueryList       = schemas.QueryCatalogList
	QueryShow       = schemas.QueryCatalogShow
	QueryDatastores = schemas.QueryCatalogDatastores
)

// ListFilter narrows a list query; empty fields match everything.
type ListFilter struct {
	User      string `json:"user,omitempty"`
	Datastore string `json:"datastore,omitempty"`
	State     string `json:"state,omitempty"`
}

// ShowRequest names one image by ID or by name (of the catalog's user).
type ShowRequest struct {
	ID   *int64 `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

func (s *Service) endpoints() map[string]bus.QueryHandler {
	return map[string]bus.QueryHandler{
		QueryList:       s.queryList,
		QueryShow:       s.queryShow,
		QueryDatastores: s.queryDatastores,
	}
}

func (s *Service) queryList(ctx context.Context, req []byte) (any, error) {
	var f ListFilter
	if err := bus.DecodeQuery(req, &f); err != nil {
		return nil, err
	}
	if f.State != "" && !State(f.State).Valid() {
		return nil, bus.Invalid(fmt.Errorf("state %q is not an image state (want one of %v)", f.State, States()))
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]schemas.Image, 0, len(all))
	for _, img := range all {
		if (f.User == "" || img.User == f.User) &&
			(f.Datastore == "" || img.Datastore == f.Datastore) &&
			(f.State == "" || string(img.State) == f.State) {
			out = append(out, img)
		}
	}
	return out, nil
}

func (s *Service) queryShow(ctx context.Context, req []byte) (any, error) {
	var r ShowRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	switch {
	case r.ID != nil && r.Name != "":
		return nil, bus.Invalid(errors.New("give id or name, not both"))
	case r.ID != nil:
		img, _, err := s.images.Get(ctx, *r.ID)
		if errors.Is(err, ErrNotFound) {
			return nil, bus.NotFound(fmt.Errorf("image %d does not exist", *r.ID))
		}
		return img, err
	case r.Name != "":
		img, err := s.images.lookupName(ctx, s.cfg.User, r.Name)
		if errors.Is(err, ErrNotFound) {
			return nil, bus.NotFound(fmt.Errorf("no image is named %q", r.Name))
		}
		return img, err
	}
	return nil, bus.Invalid(errors.New("give the id or the name of the image"))
}

func (s *Service) queryDatastores(context.Context, []byte) (any, error) {
	return s.cfg.Datastores, nil
}
