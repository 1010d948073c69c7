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

// IdentityDir makes identity keys for a test's catalog (its IdentityDir):
// with them it signs the JWTs of the users it creates.
func IdentityDir(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "identity")
	if _, err := identity.Open(dir, "slipway-test"); err != nil {
		t.Fatal(err)
	}
	return dir
}

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
// as them. On a server that authenticates no one the name is all it takes;
// the catalog still knows the user, with their groups.
func NewUser(t testing.TB, ctx context.Context, admin *bus.Bus, url, name, group string) *bus.Bus {
	t.Helper()
	CreateUser(t, ctx, admin, name, group)
	b, err := bus.Connect(ctx, bus.Config{URL: url, Service: "cli", Sender: name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}
