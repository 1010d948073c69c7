package marketdockerhub

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// lister lists a marketplace's apps upstream.
type lister interface {
	list(ctx context.Context) ([]App, error)
}

func (s *Service) lister(mk Market) (lister, error) {
	switch mk.Mad {
	case MADDockerHub:
		return hub{base: mk.Endpoint, client: s.hubClient, log: s.log}, nil
	case MADRegistry:
		return registryLister{host: mk.Registry, insecure: mk.Insecure, transport: s.cfg.Guard.Transport(), log: s.log}, nil
	}
	return nil, fmt.Errorf("marketplace %d (%s): unknown MAD %q", mk.ID, mk.Name, mk.Mad)
}

// refresh lists marketplace id again and reports apps-refreshed. A
// request older than the last listing's start is already answered by it.
// A listing that fails is reported in the event and on the marketplace,
// not retried: the schedule (or the person) tries again.
func (s *Service) refresh(ctx context.Context, m *bus.Msg, id int64) error {
	// One listing of a marketplace at a time per replica: a request that
	// waited for the one in flight is then usually answered by it.
	mu, _ := s.listing.LoadOrStore(id, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	defer mu.(*sync.Mutex).Unlock()
	mk, _, err := s.store.market(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return missing("marketplace %d does not exist", id)
	}
	if err != nil {
		return err
	}
	ev := AppsRefreshed{MarketID: id}
	if last, err := time.Parse(time.RFC3339Nano, mk.RefreshedAt); err == nil && !m.Envelope.Time.IsZero() && last.After(m.Envelope.Time) {
		apps, err := s.store.appsOf(ctx, id)
		if err != nil {
			return err
		}
		ev.Apps, ev.Error = int64(len(apps)), mk.Error
	} else if ev, err = s.relist(ctx, mk); err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, schemas.EventMarketDockerhubAppsRefreshed, idToken(id), ev, causedBy(m.Envelope, schemas.EventMarketDockerhubAppsRefreshed)...)
	return err
}

// relist reads the upstream list and makes the stored apps match it.
func (s *Service) relist(ctx context.Context, mk Market) (AppsRefreshed, error) {
	ev := AppsRefreshed{MarketID: mk.ID}
	started := now()
	l, err := s.lister(mk)
	var fresh []App
	if err == nil {
		lctx, cancel := context.WithCancel(ctx)
		stop := context.AfterFunc(s.stopping, cancel)
		fresh, err = l.list(lctx)
		stop()
		cancel()
	}
	if err != nil {
		if ctx.Err() != nil || s.stopping.Err() != nil {
			return ev, fmt.Errorf("refresh of marketplace %d interrupted: %w", mk.ID, err)
		}
		s.log.Warn("refresh failed", "market", mk.ID, "name", mk.Name, "err", err)
		ev.Error = schemas.ErrorText(err.Error())
		_, uerr := s.store.updateMarket(ctx, mk.ID, func(m *Market) error {
			m.RefreshedAt, m.Error = started, ev.Error
			return nil
		})
		return ev, uerr
	}
	if ev, err = s.storeApps(ctx, mk.ID, fresh); err != nil {
		return ev, err
	}
	_, err = s.store.updateMarket(ctx, mk.ID, func(m *Market) error {
		m.RefreshedAt, m.Error = started, ""
		return nil
	})
	if errors.Is(err, ErrNotFound) { // deleted while we listed: take its apps along
		if _, err := s.storeApps(ctx, mk.ID, nil); err != nil {
			return ev, err
		}
		return ev, refuse("marketplace %d was deleted during its refresh", mk.ID)
	}
	return ev, err
}

// storeApps writes the listed apps, keeping the ID and registration time
// of those already known, and deletes the ones no longer listed.
func (s *Service) storeApps(ctx context.Context, market int64, fresh []App) (AppsRefreshed, error) {
	ev := AppsRefreshed{MarketID: market, Apps: int64(len(fresh))}
	old, err := s.store.appsOf(ctx, market)
	if err != nil {
		return ev, err
	}
	known := make(map[string]App, len(old))
	for _, a := range old {
		known[a.Name] = a
	}
	var added int64
	for _, a := range fresh {
		if _, ok := known[a.Name]; !ok {
			added++
		}
	}
	var next int64
	if added > 0 {
		if next, err = s.store.apps.NextIDs(ctx, added); err != nil {
			return ev, err
		}
	}
	ev.Added = added
	for _, a := range fresh {
		a.MarketID = market
		if prev, ok := known[a.Name]; ok {
			a.ID, a.Regtime = prev.ID, prev.Regtime
			delete(known, a.Name)
			if sameJSON(prev, a) {
				continue
			}
		} else {
			a.ID, a.Regtime = next, now()
			next++
		}
		if _, err := s.store.apps.Put(ctx, appKey(market, a.Name), &a); err != nil {
			return ev, err
		}
	}
	for name := range known {
		if err := s.store.deleteApp(ctx, market, name); err != nil {
			return ev, err
		}
		ev.Removed++
	}
	return ev, nil
}

func sameJSON(a, b any) bool {
	x, err1 := json.Marshal(a)
	y, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(x) == string(y)
}

// schedule asks for a refresh of every monitored marketplace whose last
// listing is older than the refresh interval. It sends refresh commands
// rather than listing itself, so that replicas share the work; the
// command's ID is derived from the marketplace and its last listing, so
// replicas asking at once send one command (JetStream drops the
// duplicates).
func (s *Service) schedule(ctx context.Context) {
	tick := time.NewTicker(max(s.cfg.RefreshInterval/4, 10*time.Millisecond))
	defer tick.Stop()
	for {
		if err := s.scheduleOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("scheduling refreshes", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (s *Service) scheduleOnce(ctx context.Context) error {
	markets, err := s.store.markets.List(ctx)
	if err != nil {
		return err
	}
	for _, mk := range markets {
		if !mk.Monitoring {
			continue
		}
		last, err := time.Parse(time.RFC3339Nano, mk.RefreshedAt)
		if err == nil && time.Since(last) < s.cfg.RefreshInterval {
			continue
		}
		id := envelope.StepID(idToken(mk.ID), "refresh@"+mk.RefreshedAt)
		if _, err := s.bus.Command(ctx, ServiceName, schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: mk.ID}, bus.WithID(id)); err != nil {
			return err
		}
	}
	return nil
}
