package marketdockerhub

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/kvstore"
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
const keyInitialized = "meta.initialized"

// ErrNotFound is returned for a missing marketplace or app.
var ErrNotFound = kvstore.ErrNotFound

// store is the service's KV state: marketplaces and apps are kvstore
// records, written with compare-and-set where several replicas may race;
// templates are plain text.
type store struct {
	kv      jetstream.KeyValue
	markets *kvstore.Store[int64, Market]
	apps    *kvstore.Store[string, App] // key = appKey
}

func newStore(kv jetstream.KeyValue) *store {
	return &store{
		kv: kv,
		markets: kvstore.New[int64](kv, kvstore.Config[Market]{What: "marketplace", Prefix: "market.",
			Counter: "meta.next-market-id", Names: "mname."}),
		apps: kvstore.New[string](kv, kvstore.Config[App]{What: "app", Prefix: "app.",
			Counter: "meta.next-app-id", ID: func(a *App) int64 { return a.ID }}),
	}
}

func enc(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

// appKey is an app's key in s.apps: "<market>.<b64 repo>".
func appKey(market int64, repo string) string  { return strconv.FormatInt(market, 10) + "." + enc(repo) }
func tmplKey(market int64, repo string) string { return "tmpl." + appKey(market, repo) }

func (s *store) market(ctx context.Context, id int64) (Market, uint64, error) {
	m, rev, err := s.markets.Get(ctx, id)
	if err != nil {
		return Market{}, 0, err
	}
	return *m, rev, nil
}

func (s *store) marketByName(ctx context.Context, name string) (Market, error) {
	id, err := s.markets.LookupName(ctx, kvstore.Name{name})
	if err != nil {
		return Market{}, err
	}
	m, _, err := s.market(ctx, id)
	return m, err
}

// claimName reserves a marketplace name for id; taken names are refused,
// even when their holder is gone.
func (s *store) claimName(ctx context.Context, name string, id int64) error {
	holder, err := s.markets.ClaimName(ctx, kvstore.Name{name}, id, nil)
	if err == nil && holder != id {
		return refuse("a marketplace is already named %q", name)
	}
	return err
}

// releaseName frees the name marketplace id holds.
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
	return s.apps.ListUnder(ctx, strconv.FormatInt(market, 10)+".")
}

func (s *store) app(ctx context.Context, market int64, repo string) (App, error) {
	a, _, err := s.apps.Get(ctx, appKey(market, repo))
	if err != nil {
		return App{}, err
	}
	return *a, nil
}

func (s *store) deleteApp(ctx context.Context, market int64, repo string) error {
	if err := s.apps.Delete(ctx, appKey(market, repo)); err != nil {
		return err
	}
	if err := s.kv.Delete(ctx, tmplKey(market, repo)); err != nil {
		return fmt.Errorf("delete %s: %w", tmplKey(market, repo), err)
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
