package market

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// endpoints are the service's queries, on <prefix>.api.<service>.<endpoint>,
// with the shared contract's requests and replies.
func (s *Service) endpoints() map[string]bus.QueryHandler {
	return bus.Endpoints(
		bus.Answer(schemas.Qry[schemas.MarketListRequest, schemas.MarketListReply]{Service: s.cfg.Service, Endpoint: QueryList}, s.queryList),
		bus.Answer(schemas.Qry[schemas.MarketShowRequest, Market]{Service: s.cfg.Service, Endpoint: QueryShow}, s.queryShow),
		bus.Answer(schemas.Qry[schemas.MarketAppsRequest, schemas.MarketAppsReply]{Service: s.cfg.Service, Endpoint: QueryApps}, s.queryApps),
		bus.Answer(schemas.Qry[schemas.MarketAppShowRequest, App]{Service: s.cfg.Service, Endpoint: QueryAppShow}, s.queryAppShow),
	)
}

// queryList answers every marketplace the asker may use, with its app
// count.
func (s *Service) queryList(ctx context.Context, _ schemas.MarketListRequest) (schemas.MarketListReply, error) {
	markets, err := s.store.markets.List(ctx)
	if err != nil {
		return nil, err
	}
	apps, err := s.store.apps.List(ctx)
	if err != nil {
		return nil, err
	}
	visible, err := s.visibleMarkets(ctx, markets)
	if err != nil {
		return nil, err
	}
	counts := map[int64]int64{}
	for _, a := range apps {
		counts[a.MarketID]++
	}
	out := []Market{}
	for _, mk := range markets {
		if visible[mk.ID] {
			mk.Apps = counts[mk.ID]
			out = append(out, mk)
		}
	}
	return out, nil
}

// queryShow answers one marketplace the asker may use, by ID or by name,
// with its app count; 403 for another.
func (s *Service) queryShow(ctx context.Context, r schemas.MarketShowRequest) (Market, error) {
	mk, err := s.findMarket(ctx, r.ID, r.Name)
	if err != nil {
		return Market{}, err
	}
	if err := s.queryMayUse(ctx, &mk); err != nil {
		return Market{}, err
	}
	apps, err := s.store.appsOf(ctx, mk.ID)
	if err != nil {
		return Market{}, err
	}
	mk.Apps = int64(len(apps))
	return mk, nil
}

func (s *Service) findMarket(ctx context.Context, id *int64, name string) (Market, error) {
	return bus.ByIDOrName("marketplace", id, name,
		func(id int64) (Market, error) { return s.store.market(ctx, id) },
		func(name string) (Market, error) { return s.store.marketByName(ctx, name) },
		ErrNotFound)
}

// queryApps answers the apps of one marketplace, or of all the asker may
// use, whose name or description contains the filter.
func (s *Service) queryApps(ctx context.Context, r schemas.MarketAppsRequest) (schemas.MarketAppsReply, error) {
	apps, err := s.visibleApps(ctx, r.MarketID)
	if err != nil {
		return nil, err
	}
	out := make(schemas.MarketAppsReply, 0, len(apps))
	f := strings.ToLower(r.Filter)
	for _, a := range apps {
		if f == "" || strings.Contains(strings.ToLower(a.Name), f) || strings.Contains(strings.ToLower(a.Description), f) {
			out = append(out, a)
		}
	}
	return out, nil
}

// visibleApps are the apps of marketplace market when the asker may use
// it (403 when not), or, when market is nil, of every marketplace they
// may use. Either way the catalog is asked about the asker once.
func (s *Service) visibleApps(ctx context.Context, market *int64) ([]App, error) {
	if market != nil {
		mk, err := s.findMarket(ctx, market, "")
		if err != nil {
			return nil, err
		}
		if err := s.queryMayUse(ctx, &mk); err != nil {
			return nil, err
		}
		return s.store.appsOf(ctx, *market)
	}
	markets, err := s.store.markets.List(ctx)
	if err != nil {
		return nil, err
	}
	visible, err := s.visibleMarkets(ctx, markets)
	if err != nil {
		return nil, err
	}
	apps, err := s.store.apps.List(ctx)
	if err != nil {
		return nil, err
	}
	return slices.DeleteFunc(apps, func(a App) bool { return !visible[a.MarketID] }), nil
}

// appsIn lists the apps of marketplace market, or of every marketplace
// when market is nil.
func (s *Service) appsIn(ctx context.Context, market *int64) ([]App, error) {
	if market != nil {
		return s.store.appsOf(ctx, *market)
	}
	return s.store.apps.List(ctx)
}

// queryAppShow answers one app with the VM template of its last import,
// or the one an import under the app's own name would create.
func (s *Service) queryAppShow(ctx context.Context, r schemas.MarketAppShowRequest) (App, error) {
	app, err := s.findApp(ctx, r)
	if err != nil {
		return App{}, err
	}
	mk, err := s.store.market(ctx, app.MarketID)
	if err != nil {
		return App{}, err
	}
	if err := s.queryMayUse(ctx, &mk); err != nil {
		return App{}, err
	}
	if app.Template, err = s.store.template(ctx, app.MarketID, app.Name); err != nil {
		return App{}, err
	}
	if app.Template == "" {
		if app.Template, err = s.vmTemplate(mk, app, app.Name, s.showDisks(mk, app)); err != nil {
			return App{}, err
		}
	}
	return app, nil
}

func (s *Service) findApp(ctx context.Context, r schemas.MarketAppShowRequest) (App, error) {
	if r.ID == nil && r.Name == "" {
		return App{}, bus.Invalid(errors.New("give the id or the name of the app"))
	}
	if r.ID == nil && r.MarketID != nil {
		a, err := s.store.app(ctx, *r.MarketID, r.Name)
		if errors.Is(err, ErrNotFound) {
			return a, bus.NotFound(fmt.Errorf("marketplace %d has no app %q", *r.MarketID, r.Name))
		}
		return a, err
	}
	apps, err := s.appsIn(ctx, r.MarketID)
	if err != nil {
		return App{}, err
	}
	var found []App
	for _, a := range apps {
		if (r.ID != nil && a.ID == *r.ID) || (r.ID == nil && a.Name == r.Name) {
			found = append(found, a)
		}
	}
	switch {
	case len(found) == 1:
		return found[0], nil
	case len(found) > 1:
		var where []string
		for _, a := range found {
			where = append(where, fmt.Sprintf("app %d in marketplace %d", a.ID, a.MarketID))
		}
		return App{}, bus.Invalid(fmt.Errorf("%d apps are named %q (%s): name the marketplace or use the app ID", len(found), r.Name, strings.Join(where, ", ")))
	case r.ID != nil:
		return App{}, bus.NotFound(fmt.Errorf("app %d does not exist", *r.ID))
	}
	return App{}, bus.NotFound(fmt.Errorf("no app is named %q", r.Name))
}

// showDisks are the disks of the template app-show shows before any
// import: by the names an import under the app's own name would give
// them, which the launcher resolves when the VM is instantiated.
func (s *Service) showDisks(mk Market, app App) []Disk {
	if c, ok := s.cfg.Drivers[mk.Mad].(Composer); ok {
		if names, err := c.Parts(app); err == nil && len(names) > 0 {
			disks := make([]Disk, len(names))
			for i := range names {
				disks[i] = Disk{ID: -1, Name: partName(app.Name, i), User: s.cfg.User}
			}
			return disks
		}
	}
	return []Disk{{ID: -1, Name: app.Name, User: s.cfg.User}}
}
