package testenv

import (
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// authority is the keys a test server trusts, and where they are kept.
type authority struct {
	keys *identity.Authority
	dir  string
}

// authorities are the running test servers' authorities, by client URL:
// Connect and Dial find the credentials for a URL there.
var authorities sync.Map

// NATS starts an in-process nats-server with JetStream for this test, on a
// random port with its store in t.TempDir(), and shuts it down on cleanup.
// It authenticates as `slipway up` does: anonymous clients are refused,
// and Connect, Dial and JetStream connect with credentials from the
// server's own authority (ServerIdentityDir).
func NATS(t testing.TB) (url string, srv *server.Server) {
	t.Helper()
	dir := t.TempDir()
	a := authority{dir: filepath.Join(dir, "identity")}
	keys, err := identity.Open(a.dir, "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	a.keys = keys
	srv, err = NewNATSServer(filepath.Join(dir, "nats"), -1, keys.ConfigureServer)
	if err != nil {
		t.Fatal(err)
	}
	url = srv.ClientURL()
	authorities.Store(url, a)
	t.Cleanup(func() {
		authorities.Delete(url)
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return url, srv
}

// authorityOf is the authority of the test server at url; ok is false for a
// server NATS did not start (one that authenticates no one).
func authorityOf(url string) (authority, bool) {
	a, ok := authorities.Load(url)
	if !ok {
		return authority{}, false
	}
	return a.(authority), true
}

// mustAuthority is the authority of the test server at url; a server NATS
// did not start fails the test.
func mustAuthority(t testing.TB, url string) authority {
	t.Helper()
	a, ok := authorityOf(url)
	if !ok {
		t.Fatalf("no test authority for %s: start the server with testenv.NATS", url)
	}
	return a
}

// ServerIdentityDir is the identity directory of the test server at url:
// a catalog given it (its IdentityDir) signs users the server accepts.
func ServerIdentityDir(t testing.TB, url string) string {
	t.Helper()
	return mustAuthority(t, url).dir
}

// Principal is who a test's bus for service connects as: the service
// itself when it is one of the contract's, else the oneadmin user (a
// test's client acts as the administrator that exists from the start).
func Principal(service string) identity.Principal {
	if schemas.IsService(service) {
		return identity.Service(service)
	}
	return identity.User(acl.AdminUser, true)
}

// Sender is the name Principal(service) sends as.
func Sender(service string) string { return Principal(service).Name }

// As authenticates a connection to the test server at url as p, with
// exactly p's permissions; nil options for a server that authenticates no
// one.
func As(t testing.TB, url string, p identity.Principal) []nats.Option {
	t.Helper()
	return authOptions(t, url, func(keys *identity.Authority) (nats.Option, error) {
		return keys.Option(p, bus.DefaultPrefix)
	})
}

// authOptions is the connect option that option makes with the keys of
// the test server at url; nil options for a server that authenticates no
// one.
func authOptions(t testing.TB, url string, option func(*identity.Authority) (nats.Option, error)) []nats.Option {
	t.Helper()
	a, ok := authorityOf(url)
	if !ok {
		return nil
	}
	opt, err := option(a.keys)
	if err != nil {
		t.Fatal(err)
	}
	return []nats.Option{opt}
}

// CredentialsFile writes p's credentials for the test server at url to a
// file, 0600, for a program under test that reads one (--creds).
func CredentialsFile(t testing.TB, url string, p identity.Principal) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), p.Name+".creds")
	if err := mustAuthority(t, url).keys.EnsureCredentials(path, p, bus.DefaultPrefix); err != nil {
		t.Fatal(err)
	}
	return path
}

// witness is the test principal of Dial: it may publish and subscribe to
// anything, as a test must to inspect streams and buckets or to play a
// component the test stands in for.
const witness = "test-witness"

// Dial connects a plain NATS client to url, closed when the test ends. On
// an authenticating test server it connects as a witness that may do
// anything: the services under test still hold only their own rights.
func Dial(t testing.TB, url string) *nats.Conn {
	t.Helper()
	opts := authOptions(t, url, func(keys *identity.Authority) (nats.Option, error) {
		return keys.UnrestrictedOption(witness)
	})
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// JetStream connects a plain NATS client to url (Dial), closed when the
// test ends, and returns its JetStream.
func JetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(Dial(t, url))
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// MinIO starts a MinIO server process for this test, with its data in
// t.TempDir(), and kills it on cleanup. It fails the test (never skips it)
// when the binary is missing.
func MinIO(t testing.TB) S3 {
	t.Helper()
	s3, stop, err := StartMinIO(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return s3
}

// WaitForService waits up to 20 seconds until the service name answers a
// NATS micro PING on the server at url (asked as the test's witness: the
// discovery subjects are no principal's), and fails the test otherwise.
func WaitForService(t testing.TB, url, name string) {
	t.Helper()
	nc := Dial(t, url)
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if answers(nc, name) {
			return
		}
	}
	t.Fatalf("service %s did not come up (no answer to $SRV.PING.%s)", name, name)
}
