package testenv

import (
	"context"
	"log/slog"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// Connect connects a bus to the NATS server at url as service, with a
// logger that discards, and closes it when the test ends. It sends as
// Sender(service), with that principal's credentials on a server NATS
// started.
func Connect(t testing.TB, ctx context.Context, url, service string) *bus.Bus {
	t.Helper()
	b, err := bus.Connect(ctx, bus.Config{URL: url, Service: service, Sender: Sender(service), Logger: slog.New(slog.DiscardHandler)},
		As(t, url, Principal(service))...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Command sends the command verb of service on b, with data, and returns
// its envelope; a command that cannot be sent fails the test.
func Command(t testing.TB, ctx context.Context, b *bus.Bus, service, verb string, data any, opts ...bus.PubOption) envelope.Envelope {
	t.Helper()
	env, err := b.Command(ctx, service, verb, data, opts...)
	if err != nil {
		t.Fatalf("command %s %s: %v", service, verb, err)
	}
	return env
}

// Query asks endpoint of service on b, with req, and returns the reply; an
// error fails the test.
func Query[T any](t testing.TB, ctx context.Context, b *bus.Bus, service, endpoint string, req any) T {
	t.Helper()
	var reply T
	if err := b.Query(ctx, service, endpoint, req, &reply); err != nil {
		t.Fatalf("query %s %s: %v", service, endpoint, err)
	}
	return reply
}

// WitnessBus connects a bus as service, sending as p, on the test's
// witness connection (Dial), closed when the test ends.
func WitnessBus(t testing.TB, ctx context.Context, url, service string, p identity.Principal) *bus.Bus {
	t.Helper()
	b, err := bus.New(Dial(t, url), bus.Config{Service: service, Sender: p.Name, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

// Commander is who sends service's commands in the contract: the first
// service its commands' schemas name as a sender (the catalog, for the
// workers), else the oneadmin user.
func Commander(service string) identity.Principal {
	for _, m := range schemas.Messages() {
		if m.Kind == schemas.KindCommand && m.Service == service {
			if p := SenderOf(m); p.Service {
				return p
			}
		}
	}
	return Principal("cli")
}

// SenderOf is who a test sends the command or query m as: oneadmin when
// users or administrators may send it, else the first service its schema
// names (the launcher for image-use, the catalog for resolve).
func SenderOf(m schemas.Message) identity.Principal {
	admin := Principal("cli")
	if admin.MaySend(m) {
		return admin
	}
	for _, s := range m.Senders {
		if schemas.IsService(s) {
			return identity.Service(s)
		}
	}
	return admin
}

// CommandSender is SenderOf the command verb of service; oneadmin for a
// verb the contract does not have (the service refuses it).
func CommandSender(service, verb string) identity.Principal {
	if m, ok := schemas.Lookup(schemas.KindCommand, service, verb); ok {
		return SenderOf(m)
	}
	return Principal("cli")
}

// Store returns a blob store on this server in which buckets exist.
func (s S3) Store(t testing.TB, ctx context.Context, buckets ...string) *blob.Store {
	t.Helper()
	store, err := blob.New(s.BlobConfig())
	if err != nil {
		t.Fatal(err)
	}
	for _, bucket := range buckets {
		if err := store.EnsureBucket(ctx, bucket); err != nil {
			t.Fatal(err)
		}
	}
	return store
}

// Service is what one service under test runs on: its own NATS server,
// the service's bus with the streams set up, a client bus (service "cli")
// that sends commands and watches events, and a blob store. The service
// connects with its own credentials; the client stands in for whoever
// commands it (Commander) and for an administrator asking its queries, so
// it connects as the test's witness, sending as the commander.
type Service struct {
	URL    string // the NATS server's client URL
	Bus    *bus.Bus
	Client *bus.Bus
	Store  *blob.Store
}

// SetupStreams sets the streams up on the test server at url as the
// catalog does in a stack: no other service may (a service started
// alone waits for them).
func SetupStreams(t testing.TB, ctx context.Context, url string) {
	t.Helper()
	if err := Connect(t, ctx, url, schemas.ServiceCatalog).Setup(ctx); err != nil {
		t.Fatal(err)
	}
}

// ServiceBus starts a NATS server for this test, sets the streams up as
// the catalog and connects to it the bus of the service name and a
// client. Its Store is nil.
func ServiceBus(t testing.TB, ctx context.Context, name string) Service {
	t.Helper()
	url, _ := NATS(t)
	SetupStreams(t, ctx, url)
	return Service{URL: url, Bus: Connect(t, ctx, url, name), Client: WitnessBus(t, ctx, url, "cli", Commander(name))}
}

// NewService is ServiceBus with a store on s3 in which buckets exist.
func NewService(t testing.TB, ctx context.Context, s3 S3, name string, buckets ...string) Service {
	t.Helper()
	svc := ServiceBus(t, ctx, name)
	svc.Store = s3.Store(t, ctx, buckets...)
	return svc
}
