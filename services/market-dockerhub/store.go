package marketdockerhub

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"
)

// KV layout of the bucket <prefix>_market_dockerhub:
//
//	market.<id>            Market
//	mname.<b64 name>       the ID of the marketplace of that name
//	app.<market>.<b64 repo> App
//	tmpl.<market>.<b64 repo> the VM template of the app's last import
//	meta.next-market-id, meta.next-app-id, meta.initialized
//
// Names are base64url-encoded in keys: repositories hold '/' and '.',
// which KV keys allow but not in every arrangement ("a..b").
const (
	keyNextMarket  = "meta.next-market-id"
	keyNextApp     = "meta.next-app-id"
	keyInitialized = "meta.initialized"
)

// ErrNotFound is returned for a missing marketplace or app.
var ErrNotFound = errors.New("not found")

// store is the service's KV state, written with compare-and-set where
// several replicas may race.
type store struct{ kv jetstream.KeyValue }

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func marketKey(id int64) string               { return "market." + strconv.FormatInt(id, 10) }
func marketNameKey(name string) string        { return "mname." + enc(name) }
func appPrefix(market int64) string           { return "app." + strconv.FormatInt(market, 10) + "." }
func appKey(market int64, repo string) string { return appPrefix(market) + enc(repo) }
func tmplKey(market int64, repo string) string {
	return "tmpl." + strconv.FormatInt(market, 10) + "." + enc(repo)
}

func (s *store) getJSON(ctx context.Context, key string, v any) (uint64, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, ErrNotFound
	}
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(e.Value(), v); err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	return e.Revision(), nil
}

func (s *store) putJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, b); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	return nil
}

// all decodes every value under the key filter (e.g. "app.3.>"), in key
// order of arrival, calling add for each.
func (s *store) all(ctx context.Context, filter string, add func(key string, value []byte) error) error {
	w, err := s.kv.WatchFiltered(ctx, []string{filter}, jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("list %s: %w", filter, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e := <-w.Updates():
			if e == nil { // the initial values are all delivered
				return nil
			}
			if err := add(e.Key(), e.Value()); err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// nextIDs reserves n consecutive IDs from the counter at key.
func (s *store) nextIDs(ctx context.Context, key string, n int64) (int64, error) {
	for {
		e, err := s.kv.Get(ctx, key)
		var cur int64
		var rev uint64
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return 0, fmt.Errorf("read %s: %w", key, err)
		default:
			if cur, err = strconv.ParseInt(string(e.Value()), 10, 64); err != nil {
				return 0, fmt.Errorf("read %s: %q is not a number", key, e.Value())
			}
			rev = e.Revision()
		}
		next := []byte(strconv.FormatInt(cur+n, 10))
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, next)
		} else {
			_, err = s.kv.Update(ctx, key, next, rev)
		}
		if err == nil {
			return cur, nil
		}
		if !isConflict(err) {
			return 0, fmt.Errorf("write %s: %w", key, err)
		}
	}
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

func (s *store) market(ctx context.Context, id int64) (Market, uint64, error) {
	var m Market
	rev, err := s.getJSON(ctx, marketKey(id), &m)
	return m, rev, err
}

func (s *store) marketByName(ctx context.Context, name string) (Market, error) {
	e, err := s.kv.Get(ctx, marketNameKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Market{}, ErrNotFound
	}
	if err != nil {
		return Market{}, err
	}
	id, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return Market{}, fmt.Errorf("name index of %q: %q is not an ID", name, e.Value())
	}
	m, _, err := s.market(ctx, id)
	return m, err
}

func (s *store) markets(ctx context.Context) ([]Market, error) {
	var out []Market
	err := s.all(ctx, "market.*", func(key string, v []byte) error {
		var m Market
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		out = append(out, m)
		return nil
	})
	slices.SortFunc(out, func(a, b Market) int { return int(a.ID - b.ID) })
	return out, err
}

// claimName reserves a marketplace name for id; taken names are refused.
func (s *store) claimName(ctx context.Context, name string, id int64) error {
	_, err := s.kv.Create(ctx, marketNameKey(name), []byte(strconv.FormatInt(id, 10)))
	if isConflict(err) {
		other, gerr := s.marketByName(ctx, name)
		if gerr == nil && other.ID == id {
			return nil // a redelivery of our own claim
		}
		return refuse("a marketplace is already named %q", name)
	}
	return err
}

func (s *store) releaseName(ctx context.Context, name string) error {
	if err := s.kv.Delete(ctx, marketNameKey(name)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	return nil
}

// updateMarket applies change to marketplace id under compare-and-set.
func (s *store) updateMarket(ctx context.Context, id int64, change func(*Market) error) (Market, error) {
	for {
		m, rev, err := s.market(ctx, id)
		if err != nil {
			return m, err
		}
		if err := change(&m); err != nil {
			return m, err
		}
		b, err := json.Marshal(m)
		if err != nil {
			return m, err
		}
		if _, err = s.kv.Update(ctx, marketKey(id), b, rev); err == nil {
			return m, nil
		}
		if !isConflict(err) {
			return m, fmt.Errorf("write %s: %w", marketKey(id), err)
		}
	}
}

// apps returns the apps of one marketplace, by name.
func (s *store) apps(ctx context.Context, market int64) ([]App, error) {
	return s.appsUnder(ctx, appPrefix(market)+"*")
}

// allApps returns every marketplace's apps.
func (s *store) allApps(ctx context.Context) ([]App, error) {
	return s.appsUnder(ctx, "app.*.*")
}

func (s *store) appsUnder(ctx context.Context, filter string) ([]App, error) {
	var out []App
	err := s.all(ctx, filter, func(key string, v []byte) error {
		var a App
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("read %s: %w", key, err)
		}
		out = append(out, a)
		return nil
	})
	slices.SortFunc(out, func(a, b App) int { return int(a.ID - b.ID) })
	return out, err
}

func (s *store) app(ctx context.Context, market int64, repo string) (App, error) {
	var a App
	_, err := s.getJSON(ctx, appKey(market, repo), &a)
	return a, err
}

func (s *store) deleteApp(ctx context.Context, market int64, repo string) error {
	for _, k := range []string{appKey(market, repo), tmplKey(market, repo)} {
		if err := s.kv.Delete(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			return fmt.Errorf("delete %s: %w", k, err)
		}
	}
	return nil
}

// template returns the VM template of an app's last import ("" if none).
func (s *store) template(ctx context.Context, market int64, repo string) (string, error) {
	e, err := s.kv.Get(ctx, tmplKey(market, repo))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

func (s *store) putTemplate(ctx context.Context, market int64, repo, text string) error {
	if _, err := s.kv.Put(ctx, tmplKey(market, repo), []byte(text)); err != nil {
		return fmt.Errorf("write template of %s: %w", repo, err)
	}
	return nil
}
