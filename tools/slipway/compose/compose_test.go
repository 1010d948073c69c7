package compose_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/compose"
)

// TestInitRunsTheComposeNATS writes the layout, runs the nats-server
// binary with deploy/nats/nats.conf (its paths moved to the test's
// directories) and checks: TLS with the layout's CA only, anonymous clients
// refused, every service's and oneadmin's credentials taken as who they
// are, the catalog's identity directory loads; files are private and owned
// as asked; a second Init changes no key, no credentials and no CA.
func TestInitRunsTheComposeNATS(t *testing.T) {
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	owners := map[string]compose.Owner{}
	if os.Geteuid() == 0 {
		owners["converter"] = compose.Owner{UID: 10001, GID: 10001}
	}
	if err := compose.Init(dir, compose.Options{Owners: owners}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)

	// Private files, owned as asked.
	for _, f := range []string{"nats/auth.conf", "nats/server.key", "minio/private.key", "ca/ca.key", "catalog/nats.creds",
		"catalog/identity/operator.nk", "cli/oneadmin.creds", "dead-letter/nats.creds", "converter/nats.creds"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s is %o, want 600", f, fi.Mode().Perm())
		}
	}
	if o, ok := owners["converter"]; ok {
		for _, f := range []string{"converter", "converter/nats.creds", "converter/ca.crt"} {
			fi, _ := os.Stat(filepath.Join(dir, f))
			if st := fi.Sys().(*syscall.Stat_t); int(st.Uid) != o.UID {
				t.Errorf("%s belongs to uid %d, want %d", f, st.Uid, o.UID)
			}
		}
	}
	if err := compose.Init(dir, compose.Options{Owners: map[string]compose.Owner{"nobody": {}}}); err == nil {
		t.Error("an owner for a directory the layout does not have was taken")
	}

	url, wsURL := runNATS(t, root, filepath.Join(dir, "nats"))
	ca := filepath.Join(dir, "cli", tlsca.CertFile)
	if nc, err := nats.Connect(url, nats.NoReconnect()); err == nil || !tlsca.IsUntrusted(err) {
		if nc != nil {
			nc.Close()
		}
		t.Errorf("a client without the CA: %v, want an untrusted certificate", err)
	}
	refusedAnonymous(t, url, ca)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	who := map[string]string{"cli/oneadmin.creds": "oneadmin", "dead-letter/nats.creds": schemas.ServiceCatalog}
	for _, svc := range schemas.Services() {
		who[svc+"/nats.creds"] = svc
	}
	for file, name := range who {
		b, err := bus.Connect(ctx, bus.Config{URL: url, Service: "test", Credentials: filepath.Join(dir, file), CAFile: ca, ConnectTimeout: 10 * time.Second})
		if err != nil {
			t.Errorf("%s: %v", file, err)
			continue
		}
		if b.Sender() != name {
			t.Errorf("%s sends as %s, want %s", file, b.Sender(), name)
		}
		b.Close()
	}
	// The WebSocket listener (the web console's browsers): TLS with the
	// same CA, anonymous clients refused, oneadmin is oneadmin there too.
	refusedAnonymous(t, wsURL, ca)
	b, err := bus.Connect(ctx, bus.Config{URL: wsURL, Service: "test", Credentials: filepath.Join(dir, "cli", "oneadmin.creds"), CAFile: ca, ConnectTimeout: 10 * time.Second})
	if err != nil {
		t.Errorf("oneadmin over WebSocket: %v", err)
	} else {
		if b.Sender() != "oneadmin" || !strings.HasPrefix(b.Conn().ConnectedUrl(), "wss://") {
			t.Errorf("over WebSocket: sends as %s at %s, want oneadmin at wss://", b.Sender(), b.Conn().ConnectedUrl())
		}
		b.Close()
	}
	if ca, err := os.ReadFile(filepath.Join(dir, compose.DirConsole, tlsca.CertFile)); err != nil || !bytes.Contains(ca, []byte("BEGIN CERTIFICATE")) {
		t.Errorf("the console's copy of the CA: %v", err)
	}
	if _, err := identity.Load(filepath.Join(dir, "catalog", compose.IdentityDir), "slipway"); err != nil {
		t.Errorf("the catalog's identity directory: %v", err)
	}

	// Again: the same keys, credentials and CA.
	if err := compose.Init(dir, compose.Options{Owners: owners}); err != nil {
		t.Fatal(err)
	}
	after := snapshot(t, dir)
	for f, data := range before {
		if strings.HasSuffix(f, compose.AuthConf) { // signed anew, same keys
			continue
		}
		if !bytes.Equal(after[f], data) {
			t.Errorf("a second Init changed %s", f)
		}
	}
}

// snapshot reads every file under dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	err := filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		out[p] = data
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// runNATS runs the nats-server binary with deploy/nats/nats.conf, its
// secrets directory being natsDir.
func runNATS(t *testing.T, root, natsDir string) (url, wsURL string) {
	t.Helper()
	conf, err := os.ReadFile(filepath.Join(root, "deploy", "nats", "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	etc := t.TempDir()
	text := strings.ReplaceAll(string(conf), "/etc/nats/secrets", natsDir)
	text = strings.ReplaceAll(text, "store_dir: /data", fmt.Sprintf("store_dir: %q", filepath.Join(etc, "data")))
	// compose gives the WebSocket port in the environment; the binary
	// here runs with an empty one.
	wsPort, err := testenv.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	text = strings.ReplaceAll(text, "$SLIPWAY_NATS_WS_PORT", fmt.Sprint(wsPort))
	if err := os.Symlink(natsDir, filepath.Join(etc, "secrets")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "nats.conf"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	url = "tls://" + testenv.NATSServerBinary(t, filepath.Join(etc, "nats.conf"))
	return url, fmt.Sprintf("wss://127.0.0.1:%d", wsPort)
}

// refusedAnonymous checks that a client without credentials is refused at
// url with an authorization violation. The server answers -ERR and closes
// the connection; a client still writing its CONNECT may see the close
// (a broken pipe) before it reads the -ERR, most often over WebSocket and
// TLS, so such an attempt is made again. A connection that succeeds fails
// the test at once.
func refusedAnonymous(t *testing.T, url, ca string) {
	t.Helper()
	var err error
	for range 5 {
		var nc *nats.Conn
		nc, err = nats.Connect(url, nats.NoReconnect(), nats.RootCAs(ca))
		if err == nil {
			nc.Close()
			t.Errorf("an anonymous client connected to %s", url)
			return
		}
		if errors.Is(err, nats.ErrAuthorization) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("an anonymous client at %s: %v, want an authorization violation", url, err)
}
