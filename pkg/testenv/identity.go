package testenv

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// CreateUser has admin (a bus of the oneadmin group) create user name in
// group ("" for users) through the catalog, as `slipway user create` does:
// the key made here, its JWT from the catalog. Their credentials file is
// key.Credentials(created.JWT).
func CreateUser(t testing.TB, ctx context.Context, admin *bus.Bus, name, group string) (key *identity.UserKey, created schemas.UserCreated) {
	t.Helper()
	key, err := identity.NewUserKey()
	if err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := bus.Invoke(cctx, admin, schemas.CmdCatalogUserCreate, schemas.UserCreate{Name: name, Group: group, PublicKey: key.PublicKey()})
	if err == nil {
		err = m.Decode(&created)
	}
	if err != nil {
		t.Fatalf("user-create %s: %v", name, err)
	}
	return key, created
}

// NewUser has admin (a bus of the oneadmin group) create user name in
// group ("" for users) through the catalog, and returns a bus that sends
// as them: with the credentials the catalog issued on a server NATS
// started, by the name alone on one that authenticates no one (the catalog
// still knows the user, with their groups).
func NewUser(t testing.TB, ctx context.Context, admin *bus.Bus, url, name, group string) *bus.Bus {
	t.Helper()
	key, created := CreateUser(t, ctx, admin, name, group)
	cfg := bus.Config{URL: url, Service: "cli", Sender: name, Logger: slog.New(slog.DiscardHandler)}
	if _, ok := authorityOf(url); ok {
		creds, err := key.Credentials(created.JWT)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Sender, cfg.Credentials = "", WriteFile(t, filepath.Join(t.TempDir(), name+".creds"), string(creds))
	}
	b, err := bus.Connect(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if b.Sender() != name {
		t.Fatalf("%s's credentials send as %q", name, b.Sender())
	}
	return b
}
