package market

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// MaxMisses is how many listings in a row may miss an app before it is
// dropped: OpenNebula's rule, which rides out a mirror that is briefly
// incomplete.
const MaxMisses = 3

// refresh lists marketplace id again and reports apps-refreshed. A request
// older than the last listing's start is already answered by it. A listing
// that fails is reported in the event and on the marketplace, not retried:
// the schedule (or the person) tries again.
func (s *Service) refresh(ctx context.Context, m *bus.Msg, id int64) error {
	// One listing of a marketplace at a time per replica: a request that
	// waited for the one in flight is then usually answered by it.
	defer s.lockListing(id)()
	mk, err := s.existingMarket(ctx, id)
	if err != nil {
		return err
	}
	ev := schemas.MarketAppsRefreshed{MarketID: id}
	if last, err := time.Parse(time.RFC3339Nano, mk.RefreshedAt); err == nil && !m.Envelope.Time.IsZero() && last.After(m.Envelope.Time) {
		apps, err := s.store.appsOf(ctx, id)
		if err != nil {
			return err
		}
		ev.Apps, ev.Error = int64(len(apps)), mk.Error
	} else if ev, err = s.relist(ctx, mk); err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, EventAppsRefreshed, idToken(id), ev, CausedBy(m.Envelope, EventAppsRefreshed)...)
	return err
}

// lockListing takes marketplace id's listing lock and returns its unlock.
func (s *Service) lockListing(id int64) (unlock func()) {
	mu, _ := s.listing.LoadOrStore(id, &sync.Mutex{})
	mu.(*sync.Mutex).Lock()
	return mu.(*sync.Mutex).Unlock
}

// existingMarket is marketplace id; one that does not exist is a refusal
// (not-found).
func (s *Service) existingMarket(ctx context.Context, id int64) (Market, error) {
	mk, err := s.store.market(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return mk, missing("marketplace %d does not exist", id)
	}
	return mk, err
}

// list asks the marketplace's driver for its apps, stopping when the
// service does.
func (s *Service) list(ctx context.Context, mk Market) ([]App, error) {
	d, ok := s.cfg.Drivers[mk.Mad]
	if !ok {
		return nil, &NoDriverError{MAD: mk.Mad}
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(s.stopping, cancel)
	defer stop()
	return d.List(lctx, mk)
}

// relist reads the upstream list and applies it to the stored apps.
func (s *Service) relist(ctx context.Context, mk Market) (schemas.MarketAppsRefreshed, error) {
	ev := schemas.MarketAppsRefreshed{MarketID: mk.ID}
	started := now()
	fresh, err := s.list(ctx, mk)
	if err == nil {
		err = checkListing(fresh)
	}
	if err != nil {
		if ctx.Err() != nil || s.stopping.Err() != nil {
			return ev, fmt.Errorf("refresh of marketplace %d interrupted: %w", mk.ID, err)
		}
		s.log.Warn("refresh failed", "market", mk.ID, "name", mk.Name, "err", err)
		ev.Error = schemas.ErrorText(err.Error())
		apps, lerr := s.store.appsOf(ctx, mk.ID)
		if lerr != nil {
			return ev, lerr
		}
		ev.Apps = int64(len(apps))
		_, uerr := s.store.updateMarket(ctx, mk.ID, func(m *Market) error {
			m.RefreshedAt, m.Error = started, ev.Error
			return nil
		})
		return ev, uerr
	}
	if ev, err = s.storeApps(ctx, mk.ID, fresh); err != nil {
		return ev, err
	}
	usage, merr := s.monitor(ctx, mk)
	if merr != nil {
		ev.Error = schemas.ErrorText(merr.Error())
	}
	_, err = s.store.updateMarket(ctx, mk.ID, func(m *Market) error {
		m.RefreshedAt, m.Error = started, ev.Error
		if usage != nil {
			m.UsedMb, m.FreeMb, m.TotalMb = usage.UsedMB, usage.FreeMB, usage.TotalMB
		}
		return nil
	})
	if errors.Is(err, ErrNotFound) { // deleted while we listed: take its apps along
		if err := s.dropApps(ctx, mk.ID); err != nil {
			return ev, err
		}
		return ev, refuse("marketplace %d was deleted during its refresh", mk.ID)
	}
	return ev, err
}

// monitor asks a Monitor driver for the marketplace's usage; nil, nil for
// a driver without capacity.
func (s *Service) monitor(ctx context.Context, mk Market) (*Usage, error) {
	m, ok := s.cfg.Drivers[mk.Mad].(Monitor)
	if !ok {
		return nil, nil
	}
	u, err := m.Monitor(ctx, mk)
	if err != nil {
		s.log.Warn("monitor failed", "market", mk.ID, "name", mk.Name, "err", err)
		return nil, fmt.Errorf("monitor: %w", err)
	}
	return &u, nil
}

// checkListing refuses a listing whose apps the core cannot key: a driver
// bug, reported as a failed listing rather than half applied.
func checkListing(fresh []App) error {
	seen := make(map[string]bool, len(fresh))
	for _, a := range fresh {
		switch {
		case a.Name == "":
			return errors.New("the listing has an app without a name")
		case a.Source == "":
			return fmt.Errorf("the listing's app %q has no source", a.Name)
		case seen[a.Name]:
			return fmt.Errorf("the listing has two apps named %q", a.Name)
		}
		seen[a.Name] = true
	}
	return nil
}

// storeApps applies a listing with OpenNebula's rules: a known app keeps
// its ID and registration time and is rewritten only when its version,
// checksums or source changed (or it had been missed); a new one gets a
// new ID; one missing from the listing counts a miss and is dropped at the
// third in a row. An empty listing changes nothing: an index that lists
// nothing is more likely broken than empty.
func (s *Service) storeApps(ctx context.Context, market int64, fresh []App) (schemas.MarketAppsRefreshed, error) {
	ev := schemas.MarketAppsRefreshed{MarketID: market}
	old, err := s.store.appsOf(ctx, market)
	if err != nil {
		return ev, err
	}
	if len(fresh) == 0 {
		ev.Apps = int64(len(old))
		if len(old) > 0 {
			s.log.Warn("listing came back empty: apps kept", "market", market, "apps", len(old))
		}
		return ev, nil
	}
	known := make(map[string]App, len(old))
	for _, a := range old {
		known[a.Name] = a
	}
	var next int64
	for _, a := range fresh {
		if _, ok := known[a.Name]; !ok {
			ev.Added++
		}
	}
	if ev.Added > 0 {
		if next, err = s.store.apps.NextIDs(ctx, ev.Added); err != nil {
			return ev, err
		}
	}
	for _, a := range fresh {
		a.MarketID, a.Misses, a.Template = market, 0, ""
		fillApp(&a)
		if prev, ok := known[a.Name]; ok {
			delete(known, a.Name)
			if prev.Misses == 0 && !changed(prev, a) {
				continue
			}
			a.ID, a.Regtime = prev.ID, prev.Regtime
		} else {
			a.ID, a.Regtime = next, now()
			next++
		}
		if err := s.store.putApp(ctx, &a); err != nil {
			return ev, err
		}
	}
	ev.Apps = int64(len(fresh))
	for _, a := range known {
		a.Misses++
		if a.Misses >= MaxMisses {
			if err := s.store.deleteApp(ctx, market, a.Name); err != nil {
				return ev, err
			}
			ev.Removed++
			continue
		}
		if err := s.store.putApp(ctx, &a); err != nil {
			return ev, err
		}
		ev.Apps++
	}
	return ev, nil
}

// fillApp sets what a driver may leave out.
func fillApp(a *App) {
	if a.Type == "" {
		a.Type = schemas.MarketAppTypeImage
	}
	if a.State == "" {
		a.State = schemas.MarketAppStateReady
	}
}

// changed is OpenNebula's test for rewriting a listed app: its version,
// checksums or source.
func changed(prev, cur App) bool {
	return prev.Version != cur.Version || prev.Source != cur.Source || !slices.Equal(prev.Checksums, cur.Checksums)
}

// dropApps deletes every app of a marketplace.
func (s *Service) dropApps(ctx context.Context, market int64) error {
	apps, err := s.store.appsOf(ctx, market)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := s.store.deleteApp(ctx, market, a.Name); err != nil {
			return err
		}
	}
	return nil
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
		if _, err := s.bus.Command(ctx, s.cfg.Service, CommandRefresh, schemas.MarketRefresh{MarketID: mk.ID}, bus.WithID(id)); err != nil {
			return err
		}
	}
	return nil
}
