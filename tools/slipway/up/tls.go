package up

import (
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/slipway/slipway/pkg/tlsca"
)

// Files of the stack's TLS directory.
const (
	serverCert = "server.crt"
	serverKey  = "server.key"
	// minioCertsDir is MinIO's --certs-dir: it wants public.crt and
	// private.key there.
	minioCertsDir = "minio"
)

// makeCA opens the stack's CA when it speaks TLS (made on first use, kept
// in the data directory) and makes sure the server certificate NATS
// presents is there.
func (s *Stack) makeCA() error {
	if !s.cfg.TLS {
		return nil
	}
	dir := filepath.Join(s.cfg.DataDir, TLSDir)
	ca, err := tlsca.Open(dir, "slipway")
	if err != nil {
		return err
	}
	if _, err := ca.EnsureServer(filepath.Join(dir, serverCert), filepath.Join(dir, serverKey), tlsca.Hosts()); err != nil {
		return err
	}
	s.ca, s.CA = ca, ca.CertPath
	return nil
}

// serverTLS makes the embedded NATS server take only TLS connections,
// presenting the stack's server certificate.
func (s *Stack) serverTLS(opts *server.Options) error {
	if s.ca == nil {
		return nil
	}
	dir := filepath.Join(s.cfg.DataDir, TLSDir)
	cfg, err := server.GenTLSConfig(&server.TLSConfigOpts{
		CertFile: filepath.Join(dir, serverCert),
		KeyFile:  filepath.Join(dir, serverKey),
	})
	if err != nil {
		return fmt.Errorf("nats: TLS: %w", err)
	}
	cfg.MinVersion = tls.VersionTLS12
	opts.TLSConfig = cfg
	opts.TLS = true
	opts.TLSTimeout = 5
	return nil
}

// minioCerts is MinIO's certificate directory when the stack speaks TLS
// (its key pair, made by the stack's CA, under the names MinIO wants), or
// "".
func (s *Stack) minioCerts() (string, error) {
	if s.ca == nil {
		return "", nil
	}
	dir := filepath.Join(s.cfg.DataDir, TLSDir, minioCertsDir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("minio: certificates: %w", err)
	}
	hosts := tlsca.Hosts()
	if h, _, err := net.SplitHostPort(s.cfg.MinIOAddr); err == nil {
		hosts = tlsca.Hosts(h)
	}
	if _, err := s.ca.EnsureServer(filepath.Join(dir, "public.crt"), filepath.Join(dir, "private.key"), hosts); err != nil {
		return "", err
	}
	return dir, nil
}
