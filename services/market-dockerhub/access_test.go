package marketdockerhub

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestMarketplacePermissions: a marketplace is oneadmin's, group oneadmin,
// 744 as OpenNebula's own; a user sees it, lists its apps and imports from
// it. After market-chmod 700 the user neither sees it, lists its apps nor
// imports from it (forbidden, before its apps are looked at); 744 again
// gives it back.
func TestMarketplacePermissions(t *testing.T) {
	h := newHarness(t)
	h.startCatalog()
	host := testenv.OCIRegistry(t)
	push(t, host, "team/app", "v1", 1)
	mk := h.createMarket(MarketCreate{Name: "local", Registry: host})
	if mk.User != acl.AdminUser || mk.Group != acl.AdminGroup || mk.Permissions != "744" {
		t.Fatalf("new marketplace: owner %s, group %s, permissions %s; want oneadmin, oneadmin, 744", mk.User, mk.Group, mk.Permissions)
	}
	admin := h.cli
	alice := testenv.NewUser(t, h.ctx, admin, h.url, "alice", "")
	sees := func() bool {
		t.Helper()
		var list schemas.MarketListReply
		if err := alice.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubList, schemas.MarketListRequest{}, &list); err != nil {
			t.Fatal(err)
		}
		for _, m := range list {
			if m.ID == mk.ID {
				return true
			}
		}
		return false
	}
	if !sees() {
		t.Error("alice does not see a 744 marketplace")
	}
	var apps schemas.MarketAppsReply
	if err := alice.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{MarketID: &mk.ID}, &apps); err != nil || len(apps) != 1 {
		t.Errorf("alice lists the apps of a 744 marketplace: %d, %v", len(apps), err)
	}

	h.chmodMarket(mk.ID, "700")
	if sees() {
		t.Error("alice sees a 700 marketplace")
	}
	var shown Market
	if err := alice.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubShow, schemas.MarketShowRequest{ID: &mk.ID}, &shown); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice shows a 700 marketplace: %v, want 403", err)
	}
	if err := alice.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{MarketID: &mk.ID}, &apps); bus.ErrorCode(err) != bus.CodeForbidden {
		t.Errorf("alice lists the apps of a 700 marketplace: %v, want 403", err)
	}
	if err := alice.Query(h.ctx, ServiceName, schemas.QueryMarketDockerhubApps, schemas.MarketAppsRequest{}, &apps); err != nil {
		t.Fatal(err)
	}
	for _, a := range apps {
		if a.MarketID == mk.ID {
			t.Errorf("alice lists app %s of the 700 marketplace among every marketplace's", a.Name)
		}
	}
	env := testenv.Command(t, h.ctx, alice, ServiceName, schemas.CommandMarketDockerhubAppImport,
		AppImport{MarketID: mk.ID, App: "no/such-app", Tag: "v1", Name: "stolen", Datastore: "default"})
	var f schemas.Failure
	mustJSON(t, h.outcome(env, schemas.EventMarketDockerhubFailed).Data, &f)
	if f.Code != schemas.CodeForbidden || !strings.Contains(f.Error, "user alice may not use marketplace") {
		t.Errorf("alice imports from a 700 marketplace: %+v, want forbidden", f)
	}

	h.chmodMarket(mk.ID, "744")
	if !sees() {
		t.Error("alice does not see the marketplace made 744 again")
	}
}

// chmodMarket changes a marketplace's bits as oneadmin.
func (h *harness) chmodMarket(id int64, perms string) {
	h.t.Helper()
	env := h.command(schemas.CommandMarketDockerhubMarketChmod, MarketChmod{ID: id, Permissions: perms})
	var mk Market
	if err := json.Unmarshal(h.outcome(env, schemas.EventMarketDockerhubMarketUpdated).Data, &mk); err != nil || mk.Permissions != perms {
		h.t.Fatalf("market-chmod %d %s: %+v, %v", id, perms, mk, err)
	}
}
