package identity_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

const prefix = "slipway"

// authServer starts a nats-server that trusts only a fresh authority.
func authServer(t *testing.T) (*identity.Authority, *server.Server) {
	t.Helper()
	auth, err := identity.Open(filepath.Join(t.TempDir(), "identity"), "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.NewNATSServer(t.TempDir(), -1, auth.ConfigureServer)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	return auth, srv
}

// conn is a connection as p, with the asynchronous permission errors the
// server sends it.
type conn struct {
	*nats.Conn
	mu     sync.Mutex
	denied []string
}

func connect(t *testing.T, auth *identity.Authority, srv *server.Server, p identity.Principal) *conn {
	t.Helper()
	creds, err := auth.Credentials(p, prefix)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), p.Name+".creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		t.Fatal(err)
	}
	c := &conn{}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(path), nats.CustomInboxPrefix(p.InboxPrefix()),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.denied = append(c.denied, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		t.Fatalf("connect as %s: %v", p.Name, err)
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c
}

// wasDenied waits for the server's permission error naming subject.
func (c *conn) wasDenied(subject string) bool {
	return testenv.Eventually(2*time.Second, 5*time.Millisecond, func() bool { return c.deniedNow(subject) })
}

// subscribeDenied subscribes c to subject and reports whether the server
// refused it.
func (c *conn) subscribeDenied(t *testing.T, subject string) bool {
	t.Helper()
	if _, err := c.SubscribeSync(subject); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	return c.wasDenied(subject)
}

// deniedNow reports whether the server has said subject is denied.
func (c *conn) deniedNow(subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.denied {
		if strings.Contains(e, "Permissions Violation") && strings.Contains(e, `"`+subject+`"`) {
			return true
		}
	}
	return false
}

// observer sees every message of the account: an identity the tests alone
// make, allowed to subscribe to everything.
func observer(t *testing.T, auth *identity.Authority, srv *server.Server) (*nats.Conn, chan *nats.Msg) {
	t.Helper()
	creds, err := identity.ObserverCredentials(auth)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "observer.creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(path))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	ch := make(chan *nats.Msg, 64)
	if _, err := nc.ChanSubscribe(">", ch); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return nc, ch
}

// publishes reports whether the server lets c publish on subject: the
// observer receives it, or the server says it is denied.
func publishes(t *testing.T, c *conn, seen chan *nats.Msg, subject string) bool {
	t.Helper()
	if err := c.Publish(subject, []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(5 * time.Second)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case m := <-seen:
			if m.Subject == subject {
				return true
			}
		case <-tick.C:
			if c.deniedNow(subject) {
				return false
			}
		case <-deadline:
			t.Fatalf("publish on %s: neither delivered nor denied", subject)
		}
	}
}

func TestAnonymousConnectionsAreRefused(t *testing.T) {
	_, srv := authServer(t)
	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(0))
	if err == nil {
		nc.Close()
		t.Fatal("an anonymous client connected")
	}
	if !errors.Is(err, nats.ErrAuthorization) && !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v, want an authorization violation", err)
	}
}

// TestPermissionMatrix walks every command, query and event of the schemas
// for every service, a user and an administrator: each may publish exactly
// what MaySend says, with its own token, and nothing with another's.
func TestPermissionMatrix(t *testing.T) {
	auth, srv := authServer(t)
	_, seen := observer(t, auth, srv)
	principals := []identity.Principal{identity.User("alice", false), identity.User("oneadmin", true)}
	for _, s := range []string{schemas.ServiceBuilder, schemas.ServiceCatalog, schemas.ServiceConverter, schemas.ServiceCryptoLUKS,
		schemas.ServiceKernelRegistry, schemas.ServiceLauncher, schemas.ServiceMarketDockerhub, schemas.ServiceMarketLxc} {
		principals = append(principals, identity.Service(s))
	}
	bob := identity.User("bob", false)
	checked := 0
	for _, p := range principals {
		c := connect(t, auth, srv, p)
		for _, m := range schemas.Messages() {
			var subject string
			switch m.Kind {
			case schemas.KindCommand, schemas.KindQuery:
				subject = p.Subject(prefix, m)
				// Never as somebody else.
				if publishes(t, c, seen, bob.Subject(prefix, m)) {
					t.Errorf("%s published as bob on %s", p.Name, bob.Subject(prefix, m))
				}
			case schemas.KindEvent:
				subject = prefix + ".evt." + m.Service + "." + m.Name + ".7"
			default:
				continue
			}
			if got, want := publishes(t, c, seen, subject), p.MaySend(m); got != want {
				t.Errorf("%s publishes %s: %v, want %v", p.Name, subject, got, want)
			}
			checked++
		}
	}
	t.Logf("%d subjects checked", checked)
}

// TestTheIssuesMatrix states, by name, the rules the permission matrix
// must hold whatever the schemas grow into.
func TestTheIssuesMatrix(t *testing.T) {
	msg := func(kind, service, name string) schemas.Message {
		m, ok := schemas.Lookup(kind, service, name)
		if !ok {
			t.Fatalf("no schema %s/%s.%s", kind, service, name)
		}
		return m
	}
	var workers []schemas.Message
	for _, m := range schemas.Messages() {
		if m.Kind == schemas.KindCommand && (m.Service == schemas.ServiceConverter || m.Service == schemas.ServiceBuilder || m.Service == schemas.ServiceCryptoLUKS) {
			workers = append(workers, m)
		}
	}
	everyone := []identity.Principal{identity.User("alice", false), identity.User("oneadmin", true)}
	for _, m := range schemas.Messages() {
		if !slicesContains(everyone, identity.Service(m.Service)) {
			everyone = append(everyone, identity.Service(m.Service))
		}
	}
	for _, p := range everyone {
		for _, m := range workers {
			// The catalog commands the workers, but for one operator's
			// task: the oneadmin group rotates crypto-luks's
			// key-encryption key, and only they.
			rotateKEK := m.Service == schemas.ServiceCryptoLUKS && m.Name == schemas.CommandCryptoLUKSRotateKek
			want := p == identity.Service(schemas.ServiceCatalog) && !rotateKEK || p.Admin && rotateKEK
			if p.MaySend(m) != want {
				t.Errorf("%s may send %s.%s: %v; only the catalog may command the workers", p.Name, m.Service, m.Name, p.MaySend(m))
			}
		}
		secret := msg(schemas.KindQuery, schemas.ServiceCryptoLUKS, schemas.QueryCryptoLUKSSecret)
		if p.Service && p.MaySend(secret) != (p.Name == schemas.ServiceLauncher) {
			t.Errorf("service %s may ask for a passphrase: %v; only the launcher may", p.Name, p.MaySend(secret))
		}
		if !p.Service && !p.Admin && p.MaySend(secret) {
			t.Errorf("user %s may ask for a passphrase", p.Name)
		}
		del := msg(schemas.KindCommand, schemas.ServiceCryptoLUKS, schemas.CommandCryptoLUKSSecretDelete)
		if p.MaySend(del) != (p == identity.Service(schemas.ServiceCatalog)) {
			t.Errorf("%s may delete a secret: %v; only the catalog may", p.Name, p.MaySend(del))
		}
		// Each marketplace service schedules its own refreshes; no other
		// service, and no user but an administrator, asks for one.
		for _, svc := range []string{schemas.ServiceMarketDockerhub, schemas.ServiceMarketLxc} {
			refresh := msg(schemas.KindCommand, svc, "refresh")
			if p.MaySend(refresh) != (p.Admin || p == identity.Service(svc)) {
				t.Errorf("%s may ask %s for a refresh: %v; only it and the administrators may", p.Name, svc, p.MaySend(refresh))
			}
		}
		for _, m := range schemas.Messages() {
			if m.Kind == schemas.KindEvent && p.MaySend(m) != (p.Service && p.Name == m.Service) {
				t.Errorf("%s may publish %s's event %s", p.Name, m.Service, m.Name)
			}
		}
	}
}

func slicesContains(ps []identity.Principal, p identity.Principal) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// TestUsersCannotTouchJetStream: a user's request to the JetStream API is
// denied; an administrator's is answered.
func TestUsersCannotTouchJetStream(t *testing.T) {
	auth, srv := authServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	alice := connect(t, auth, srv, identity.User("alice", false))
	js, err := jetstream.New(alice.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AccountInfo(ctx); err == nil {
		t.Error("alice read the JetStream account")
	}
	if !alice.wasDenied("$JS.API.INFO") {
		t.Errorf("no permission error for $JS.API.INFO: %v", alice.denied)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	admin := connect(t, auth, srv, identity.User("oneadmin", true))
	jsa, err := jetstream.New(admin.Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jsa.AccountInfo(ctx); err != nil {
		t.Errorf("oneadmin: JetStream account info: %v", err)
	}
}

// TestInboxesArePrivate: alice cannot subscribe to bob's replies, nor to
// the queries a service answers.
func TestInboxesArePrivate(t *testing.T) {
	auth, srv := authServer(t)
	alice := connect(t, auth, srv, identity.User("alice", false))
	for _, subject := range []string{identity.User("bob", false).InboxPrefix() + ".>", "_INBOX.>", prefix + ".api.crypto-luks.>", ">"} {
		if !alice.subscribeDenied(t, subject) {
			t.Errorf("alice subscribed to %s", subject)
		}
	}
}

// TestQueryAnsweredOnlyForItsSenders: the launcher asks crypto-luks and is
// answered on its inbox; the question reaches crypto-luks with the
// launcher's token, which is how crypto-luks knows who asked.
func TestQueryAnsweredOnlyForItsSenders(t *testing.T) {
	auth, srv := authServer(t)
	luks := connect(t, auth, srv, identity.Service(schemas.ServiceCryptoLUKS))
	secret, _ := schemas.Lookup(schemas.KindQuery, schemas.ServiceCryptoLUKS, schemas.QueryCryptoLUKSSecret)
	var asker string
	if _, err := luks.Subscribe(identity.MessageSubject(prefix, secret)+".*", func(m *nats.Msg) {
		asker = schemas.Sender(m.Subject)
		_ = m.Respond([]byte(`{"sealed":"x"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if err := luks.Flush(); err != nil {
		t.Fatal(err)
	}
	launcher := identity.Service(schemas.ServiceLauncher)
	lc := connect(t, auth, srv, launcher)
	if _, err := lc.Request(launcher.Subject(prefix, secret), []byte("{}"), 2*time.Second); err != nil {
		t.Fatalf("launcher's secret query: %v", err)
	}
	if asker != schemas.ServiceLauncher {
		t.Errorf("crypto-luks saw the asker as %q", asker)
	}
	alice := identity.User("alice", false)
	ac := connect(t, auth, srv, alice)
	if _, err := ac.Request(alice.Subject(prefix, secret), []byte("{}"), 500*time.Millisecond); err == nil {
		t.Error("alice was answered a passphrase query")
	}
}

// TestCredentialsWorkWithTheNATSCLI: a credentials file is the standard
// kind: the nats CLI publishes with it, and is refused without it.
func TestCredentialsWorkWithTheNATSCLI(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	natsCLI := filepath.Join(root, "bin", "nats")
	if _, err := os.Stat(natsCLI); err != nil {
		testenv.Skip(t, "no nats CLI at %s (make tools installs it)", natsCLI)
	}
	auth, srv := authServer(t)
	_, seen := observer(t, auth, srv)
	alice := identity.User("alice", false)
	creds, err := auth.Credentials(alice, prefix)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "alice.creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		t.Fatal(err)
	}
	del, _ := schemas.Lookup(schemas.KindCommand, schemas.ServiceCatalog, schemas.CommandCatalogImageDelete)
	subject := alice.Subject(prefix, del)
	run := func(args ...string) (string, error) {
		cmd := exec.Command(natsCLI, append([]string{"--server", srv.ClientURL(), "--timeout", "5s"}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := run("--creds", path, "pub", subject, `{"id":1}`); err != nil {
		t.Fatalf("nats pub with alice's credentials: %v\n%s", err, out)
	}
	select {
	case m := <-seen:
		if m.Subject != subject || string(m.Data) != `{"id":1}` {
			t.Errorf("observed %s %s", m.Subject, m.Data)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("alice's nats pub did not arrive")
	}
	if out, err := run("pub", subject, `{}`); err == nil {
		t.Errorf("nats pub without credentials succeeded:\n%s", out)
	}
}

func TestNamesAreValidated(t *testing.T) {
	auth, err := identity.Open(t.TempDir(), "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []identity.Principal{
		identity.User("catalog", false), identity.User("users", false), identity.User("al.ice", false),
		identity.User("*", false), identity.User(">", false), identity.User("", false), identity.User("Alice", false),
		identity.Service("janitor"),
	} {
		if _, err := auth.Credentials(p, prefix); err == nil {
			t.Errorf("credentials issued for %+v", p)
		}
	}
}

// TestOpenKeepsItsKeys: a reopened authority is the same operator, so the
// credentials it issued before still connect; its seed files are private.
func TestOpenKeepsItsKeys(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "identity")
	first, err := identity.Open(dir, "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	creds, err := first.Credentials(identity.User("alice", false), prefix)
	if err != nil {
		t.Fatal(err)
	}
	again, err := identity.Open(dir, "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := testenv.NewNATSServer(t.TempDir(), -1, again.ConfigureServer)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
	path := filepath.Join(t.TempDir(), "alice.creds")
	if err := identity.WriteCredentials(path, creds); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), nats.UserCredentials(path))
	if err != nil {
		t.Fatalf("credentials from before the reopen: %v", err)
	}
	nc.Close()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s is %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if err := identity.WriteCredentials(path, creds); err == nil {
		t.Error("WriteCredentials wrote over an existing file")
	}
}
