package bus

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// authBus connects as p to a server that authenticates.
func authBus(t testing.TB, auth *identity.Authority, url string, p identity.Principal, service string) *Bus {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.Name+".creds")
	if err := auth.EnsureCredentials(path, p, DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Connect(ctx, Config{URL: url, Service: service, Credentials: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	if b.Sender() != p.Name {
		t.Fatalf("the bus of %s's credentials sends as %q", p.Name, b.Sender())
	}
	return b
}

// authServer starts a server that trusts only a fresh authority, and
// connects the catalog to it, which sets the streams up.
func authServer(t testing.TB) (*identity.Authority, *server.Server, *Bus) {
	t.Helper()
	auth, err := identity.Open(filepath.Join(t.TempDir(), "identity"), "bus-test")
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, auth.ConfigureServer)
	catalog := authBus(t, auth, srv.ClientURL(), identity.Service(schemas.ServiceCatalog), schemas.ServiceCatalog)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := catalog.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	return auth, srv, catalog
}

// TestSenderComesFromTheServer: on a server that authenticates, a query's
// handler and a command's consumer learn who sent it from the subject the
// server let that principal publish, and a bus that claims to be someone
// else is refused.
func TestSenderComesFromTheServer(t *testing.T) {
	auth, srv, catalog := authServer(t)
	ctx := testCtx(t)
	asked := make(chan string, 1)
	svc, err := catalog.Serve("1.0.0", "test", map[string]QueryHandler{
		schemas.QueryCatalogList: func(ctx context.Context, _ []byte) (any, error) {
			asked <- QuerySender(ctx)
			return schemas.CatalogListReply{}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	sent := make(chan string, 4)
	stop, err := catalog.ConsumeCommands(ctx, func(_ context.Context, m *Msg) error {
		sent <- m.Sender
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop.Stop)

	alice := authBus(t, auth, srv.ClientURL(), identity.User("alice", false), "cli")
	if _, err := Ask(ctx, alice, schemas.QryCatalogList, schemas.CatalogListRequest{}); err != nil {
		t.Fatalf("alice lists: %v", err)
	}
	if got := <-asked; got != "alice" {
		t.Errorf("the query handler saw %q ask, want alice", got)
	}
	if _, err := alice.Command(ctx, schemas.ServiceCatalog, schemas.CommandCatalogImageEnable, schemas.ImageRef{ID: 1}); err != nil {
		t.Fatalf("alice enables: %v", err)
	}
	if got := <-sent; got != "alice" {
		t.Errorf("the command's consumer saw %q send, want alice", got)
	}

	// alice's credentials, bob's name: the server drops the command and
	// the query, and the catalog never sees them.
	path := filepath.Join(t.TempDir(), "alice-as-bob.creds")
	if err := auth.EnsureCredentials(path, identity.User("alice", false), DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	forger, err := Connect(ctx, Config{URL: srv.ClientURL(), Service: "cli", Sender: "bob", Credentials: path, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(forger.Close)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := forger.Command(short, schemas.ServiceCatalog, schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: 1}); err == nil {
		t.Error("a command sent as bob with alice's credentials was acknowledged")
	}
	if _, err := Ask(short, forger, schemas.QryCatalogList, schemas.CatalogListRequest{}); err == nil {
		t.Error("a query asked as bob with alice's credentials was answered")
	}
	select {
	case s := <-sent:
		t.Errorf("the catalog received a command from %q", s)
	case s := <-asked:
		t.Errorf("the catalog answered a query from %q", s)
	case <-time.After(500 * time.Millisecond):
	}

	// Without credentials the server refuses at once, and Connect says so
	// rather than retrying.
	start := time.Now()
	if _, err := Connect(ctx, Config{URL: srv.ClientURL(), Service: "cli", Logger: quietLogger()}); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("anonymous connect: %v, want an authorization violation", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the refused connect took %s", d)
	}
}
