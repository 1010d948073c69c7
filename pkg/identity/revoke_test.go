package identity_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
)

// TestRevokedKeysAreRefused: once the account's JWT revoking a user's key
// is pushed, the server closes the connection open with it and refuses new
// ones, while other users keep working. Both on the embedded server (slipway
// up) and on the nats-server binary configured by WriteServerConfig
// (compose).
func TestRevokedKeysAreRefused(t *testing.T) {
	servers := map[string]func(t *testing.T, auth *identity.Authority) string{
		"embedded": func(t *testing.T, auth *identity.Authority) string {
			srv, err := testenv.NewNATSServer(t.TempDir(), -1, auth.ConfigureServer)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
			return srv.ClientURL()
		},
		"nats-server binary": natsServerBinary,
	}
	for name, start := range servers {
		t.Run(name, func(t *testing.T) {
			auth, err := identity.Open(filepath.Join(t.TempDir(), "identity"), "slipway-test")
			if err != nil {
				t.Fatal(err)
			}
			url := start(t, auth)
			credsOf := func(user string) (string, string) {
				key, err := identity.NewUserKey()
				if err != nil {
					t.Fatal(err)
				}
				token, err := auth.Issue(identity.User(user, false), key.PublicKey(), prefix)
				if err != nil {
					t.Fatal(err)
				}
				creds, err := key.Credentials(token)
				if err != nil {
					t.Fatal(err)
				}
				path := filepath.Join(t.TempDir(), user+".creds")
				if err := identity.WriteCredentials(path, creds); err != nil {
					t.Fatal(err)
				}
				return path, key.PublicKey()
			}
			alice, aliceKey := credsOf("alice")
			bob, _ := credsOf("bob")
			closed := make(chan error, 1)
			open, err := nats.Connect(url, nats.UserCredentials(alice), nats.NoReconnect(),
				nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
					select {
					case closed <- err:
					default:
					}
				}))
			if err != nil {
				t.Fatalf("alice before revocation: %v", err)
			}
			defer open.Close()

			token, err := auth.AccountJWT(map[string]time.Time{aliceKey: time.Now()})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := auth.PushAccount(ctx, open.Opts, token); err != nil {
				t.Fatal(err)
			}
			if !testenv.Eventually(5*time.Second, 20*time.Millisecond, open.IsClosed) {
				t.Error("alice's open connection was not closed by the revocation")
			}
			select {
			case err := <-closed:
				t.Logf("alice's open connection: %v", err)
			case <-time.After(time.Second):
			}
			_, err = nats.Connect(url, nats.UserCredentials(alice), nats.NoReconnect())
			if !errors.Is(err, nats.ErrAuthRevoked) && !errors.Is(err, nats.ErrAuthorization) {
				t.Errorf("alice after revocation: %v, want refused", err)
			} else {
				t.Logf("alice after revocation: %v", err)
			}
			nc, err := nats.Connect(url, nats.UserCredentials(bob), nats.NoReconnect())
			if err != nil {
				t.Fatalf("bob after alice's revocation: %v", err)
			}
			nc.Close()
		})
	}
}

// TestPushAccountRefusesAForeignAuthority: an account JWT signed by another
// operator is refused, and the error says so.
func TestPushAccountRefusesAForeignAuthority(t *testing.T) {
	auth, srv := authServer(t)
	other, err := identity.Open(filepath.Join(t.TempDir(), "other"), "slipway-test")
	if err != nil {
		t.Fatal(err)
	}
	token, err := other.AccountJWT(nil)
	if err != nil {
		t.Fatal(err)
	}
	opt, err := auth.Option(identity.Service("catalog"), prefix)
	if err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(srv.ClientURL(), opt)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// The foreign authority's system user is no one to this server.
	if err := other.PushAccount(ctx, nc.Opts, token); err == nil {
		t.Error("another authority pushed an account JWT")
	}
	if _, err := auth.AccountJWT(map[string]time.Time{"not-a-key": time.Now()}); err == nil {
		t.Error("a revocation of something that is no user key was signed")
	}
}

// natsServerBinary runs ./bin/nats-server with the configuration
// WriteServerConfig writes, as compose does, and returns its URL.
func natsServerBinary(t *testing.T, auth *identity.Authority) string {
	t.Helper()
	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteServerConfig(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	conf := fmt.Sprintf("jetstream { store_dir: %q }\ninclude ./auth.conf\n", filepath.Join(dir, "js"))
	if err := os.WriteFile(filepath.Join(dir, "nats.conf"), []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return "nats://" + testenv.NATSServerBinary(t, filepath.Join(dir, "nats.conf"))
}
