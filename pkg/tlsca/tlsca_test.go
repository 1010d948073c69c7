package tlsca_test

import (
	"bytes"
	"crypto/tls"
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/pkg/tlsca"
)

func TestCAAndServerCertificates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	ca, err := tlsca.Open(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700, tlsca.KeyFile: 0o600, tlsca.CertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s is %o, want %o", name, fi.Mode().Perm(), want)
		}
	}
	again, err := tlsca.Open(dir, "test")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.CertPEM(), ca.CertPEM()) {
		t.Error("a second Open made a new CA instead of loading the first")
	}

	crt, key := filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	hosts := tlsca.Hosts("nats")
	if wrote, err := ca.EnsureServer(crt, key, hosts); err != nil || !wrote {
		t.Fatalf("first EnsureServer: wrote %v, %v", wrote, err)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("server key is %o, want 600", fi.Mode().Perm())
	}
	if wrote, err := ca.EnsureServer(crt, key, hosts); err != nil || wrote {
		t.Errorf("EnsureServer with nothing changed: wrote %v, %v; want the pair reused", wrote, err)
	}
	if wrote, err := ca.EnsureServer(crt, key, tlsca.Hosts("nats", "minio")); err != nil || !wrote {
		t.Errorf("EnsureServer with a new name: wrote %v, %v; want a new pair", wrote, err)
	}
	other, err := tlsca.Open(filepath.Join(t.TempDir(), "other"), "other")
	if err != nil {
		t.Fatal(err)
	}
	if wrote, err := other.EnsureServer(crt, key, tlsca.Hosts("nats", "minio")); err != nil || !wrote {
		t.Errorf("another CA's EnsureServer: wrote %v, %v; want a pair of its own", wrote, err)
	}
	if _, err := ca.EnsureServer(crt, key, nil); err == nil {
		t.Error("a certificate for no host was made")
	}

	// A real handshake: the client that trusts the CA connects, one that
	// trusts only the system's roots fails with an untrusted certificate.
	pair, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()
	good, err := tlsca.ClientConfig(other.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := tls.Dial("tcp", ln.Addr().String(), good)
	if err != nil {
		t.Fatalf("client trusting the CA: %v", err)
	}
	c.Close()
	wrong, err := tlsca.ClientConfig(ca.CertPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]*tls.Config{"another CA": wrong, "system roots": {}} {
		_, err := tls.Dial("tcp", ln.Addr().String(), cfg)
		if err == nil || !tlsca.IsUntrusted(err) {
			t.Errorf("client trusting %s: %v, want an untrusted certificate", name, err)
		}
	}
}

func TestPoolRefusesWhatIsNoCertificate(t *testing.T) {
	f := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(f, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := tlsca.Pool(f); err == nil {
		t.Error("a file without a certificate became a pool")
	}
	if _, err := tlsca.Pool(f + ".missing"); err == nil {
		t.Error("a missing file became a pool")
	}
}
