package market

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// KV layout. The service's bucket (<prefix>_market_lxc, …):
//
//	market.<id>              Market
//	app.<market>.<b64 name>  App
//	tmpl.<market>.<b64 name> the VM template of the app's last import
//	meta.preregistered.<id>  set once the pre-registered marketplace id was made
//
// The bucket shared by the marketplace services (<prefix>_market_ids):
//
//	next-market-id, next-app-id   the counters (market IDs start at 100)
//	mname.<b64 name>              the ID of the marketplace of that name
//
// Names are base64url-encoded in keys: they hold '/' and '.', which KV
// keys allow but not in every arrangement ("a..b").
const (
	keyPreregistered = "meta.preregistered."
	keyMarketCounter = "next-market-id"
	keyAppCounter    = "next-app-id"
)

// ErrNotFound is returned for a missing marketplace or app.
var ErrNotFound = kvstore.ErrNotFound

// The core's records are the schemas module's generated types.
type (
	// Market is a marketplace record, the payload of market-created and
	// market-updated.
	Market = schemas.Market
	// App is one app of a marketplace.
	App = schemas.MarketApp
	// AppImport is the app-import command.
	AppImport = schemas.MarketAppImport
)

// store is a service's KV state: marketplaces and apps are kvstore
// records, written with compare-and-set where several replicas may race;
// templates are plain text. IDs and names live in the shared bucket.
type store struct {
	kv, ids jetstream.KeyValue
	markets *kvstore.Store[int64, Market]
	apps    *kvstore.Store[string, App] // key = appKey
}

func newStore(kv, ids jetstream.KeyValue) *store {
	return &store{
		kv: kv, ids: ids,
		markets: kvstore.New[int64](kv, kvstore.Config[Market]{What: "marketplace", Prefix: "market.",
			Meta: ids, Counter: keyMarketCounter, Names: "mname."}),
		apps: kvstore.New[string](kv, kvstore.Config[App]{What: "app", Prefix: "app.",
			Meta: ids, Counter: keyAppCounter, ID: func(a *App) int64 { return a.ID }}),
	}
}

// startCounters makes the marketplace counter start at FirstCreatedID
// (whichever service comes first; the other finds it set).
func (s *store) startCounters(ctx context.Context) error {
	_, err := s.ids.Create(ctx, keyMarketCounter, []byte(strconv.Itoa(FirstCreatedID)))
	if err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("start the marketplace IDs at %d: %w", FirstCreatedID, err)
	}
	return nil
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func idToken(id int64) string { return strconv.FormatInt(id, 10) }

// appKey is an app's key in s.apps: "<market>.<b64 name>".
func appKey(market int64, name string) string  { return idToken(market) + "." + enc(name) }
func tmplKey(market int64, name string) string { return "tmpl." + appKey(market, name) }

func (s *store) market(ctx context.Context, id int64) (Market, error) {
	m, _, err := s.markets.Get(ctx, id)
	if err != nil {
		return Market{}, err
	}
	return *m, nil
}

// marketByName finds a marketplace of this service by name (the index is
// shared: a name another service holds is not found here).
func (s *store) marketByName(ctx context.Context, name string) (Market, error) {
	id, err := s.markets.LookupName(ctx, kvstore.Name{name})
	if err != nil {
		return Market{}, err
	}
	return s.market(ctx, id)
}

// claimName reserves a marketplace name for id across the marketplace
// services; taken names are refused, even when their holder is gone.
func (s *store) claimName(ctx context.Context, name string, id int64) error {
	holder, err := s.markets.ClaimName(ctx, kvstore.Name{name}, id, nil)
	if err == nil && holder != id {
		return refuse("a marketplace is already named %q (marketplace %d)", name, holder)
	}
	return err
}

func (s *store) releaseName(ctx context.Context, name string, id int64) error {
	return s.markets.ReleaseName(ctx, kvstore.Name{name}, id)
}

// updateMarket applies change to marketplace id under compare-and-set.
func (s *store) updateMarket(ctx context.Context, id int64, change func(*Market) error) (Market, error) {
	m, _, err := s.markets.Update(ctx, id, change)
	if err != nil {
		return Market{}, err
	}
	return *m, nil
}

// appsOf returns the apps of one marketplace, by ID.
func (s *store) appsOf(ctx context.Context, market int64) ([]App, error) {
	return s.apps.ListUnder(ctx, idToken(market)+".")
}

func (s *store) app(ctx context.Context, market int64, name string) (App, error) {
	a, _, err := s.apps.Get(ctx, appKey(market, name))
	if err != nil {
		return App{}, err
	}
	return *a, nil
}

func (s *store) putApp(ctx context.Context, a *App) error {
	_, err := s.apps.Put(ctx, appKey(a.MarketID, a.Name), a)
	return err
}

func (s *store) deleteApp(ctx context.Context, market int64, name string) error {
	if err := s.apps.Delete(ctx, appKey(market, name)); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, tmplKey(market, name)); err != nil {
		return fmt.Errorf("delete %s: %w", tmplKey(market, name), err)
	}
	return nil
}

// template returns the VM template of an app's last import ("" if none).
func (s *store) template(ctx context.Context, market int64, name string) (string, error) {
	e, err := s.kv.Get(ctx, tmplKey(market, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

func (s *store) putTemplate(ctx context.Context, market int64, name, text string) error {
	if _, err := s.kv.Put(ctx, tmplKey(market, name), []byte(text)); err != nil {
		return fmt.Errorf("write template of %s: %w", name, err)
	}
	return nil
}
