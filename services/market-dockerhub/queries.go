package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
)

func (s *Service) endpoints() map[string]bus.QueryHandler {
	return map[string]bus.QueryHandler{
		QueryList:    s.queryList,
		QueryShow:    s.queryShow,
		QueryApps:    s.queryApps,
		QueryAppShow: s.queryAppShow,
	}
}

// queryList answers every marketplace with its app count.
func (s *Service) queryList(ctx context.Context, _ []byte) (any, error) {
	markets, err := s.store.markets.List(ctx)
	if err != nil {
		return nil, err
	}
	apps, err := s.store.apps.List(ctx)
	if err != nil {
		return nil, err
	}
	counts := map[int64]int64{}
	for _, a := range apps {
		counts[a.MarketID]++
	}
	for i := range markets {
		markets[i].Apps = counts[markets[i].ID]
	}
	if markets == nil {
		markets = []Market{}
	}
	return markets, nil
}

func (s *Service) queryShow(ctx context.Context, req []byte) (any, error) {
	var r ShowRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	mk, err := s.findMarket(ctx, r)
	if err != nil {
		return nil, err
	}
	apps, err := s.store.appsOf(ctx, mk.ID)
	if err != nil {
		return nil, err
	}
	mk.Apps = int64(len(apps))
	return mk, nil
}

func (s *Service) findMarket(ctx context.Context, r ShowRequest) (Market, error) {
	var mk Market
	var err error
	switch {
	case r.ID != nil && r.Name != "":
		return mk, bus.Invalid(errors.New("give id or name, not both"))
	case r.ID != nil:
		if mk, _, err = s.store.market(ctx, *r.ID); errors.Is(err, ErrNotFound) {
			return mk, bus.NotFound(fmt.Errorf("marketplace %d does not exist", *r.ID))
		}
	case r.Name != "":
		if mk, err = s.store.marketByName(ctx, r.Name); errors.Is(err, ErrNotFound) {
			return mk, bus.NotFound(fmt.Errorf("no marketplace is named %q", r.Name))
		}
	default:
		return mk, bus.Invalid(errors.New("give the id or the name of the marketplace"))
	}
	return mk, err
}

func (s *Service) queryApps(ctx context.Context, req []byte) (any, error) {
	var r AppsRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	var apps []App
	var err error
	if r.MarketID != nil {
		if _, err := s.findMarket(ctx, ShowRequest{ID: r.MarketID}); err != nil {
			return nil, err
		}
		apps, err = s.store.appsOf(ctx, *r.MarketID)
	} else {
		apps, err = s.store.apps.List(ctx)
	}
	if err != nil {
		return nil, err
	}
	out := make([]App, 0, len(apps))
	f := strings.ToLower(r.Filter)
	for _, a := range apps {
		if f == "" || strings.Contains(strings.ToLower(a.Name), f) || strings.Contains(strings.ToLower(a.Description), f) {
			out = append(out, a)
		}
	}
	return out, nil
}

// queryAppShow answers one app with the VM template of its last import,
// or the one an import under the app's own name would create.
func (s *Service) queryAppShow(ctx context.Context, req []byte) (any, error) {
	var r AppShowRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	app, err := s.findApp(ctx, r)
	if err != nil {
		return nil, err
	}
	if app.Template, err = s.store.template(ctx, app.MarketID, app.Name); err != nil {
		return nil, err
	}
	if app.Template == "" {
		app.Template = VMTemplate(app.Name, s.cfg.User, s.cfg.Kernel, -1, app)
	}
	return app, nil
}

func (s *Service) findApp(ctx context.Context, r AppShowRequest) (App, error) {
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
	var apps []App
	var err error
	if r.MarketID != nil {
		apps, err = s.store.appsOf(ctx, *r.MarketID)
	} else {
		apps, err = s.store.apps.List(ctx)
	}
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
