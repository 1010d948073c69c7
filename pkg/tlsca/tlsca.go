// Package tlsca is Slipway's own small certificate authority: an ECDSA CA
// kept in a directory (ca.crt, ca.key 0600), and server certificates it
// signs for the names a server is reached by (127.0.0.1, localhost, a
// compose service's name). `slipway up --tls` and `slipway identity init`
// make them; clients trust the CA's certificate (SLIPWAY_CA) and nothing
// else is needed: no public CA, no system trust store.
//
// Everything is reused when it is there and still good, so running either
// again changes nothing: a server certificate is made anew only when it is
// missing, not signed by the CA, lacks one of the names or expires within
// [RenewBefore].
package tlsca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// File names in a CA's directory.
const (
	CertFile = "ca.crt"
	KeyFile  = "ca.key"
)

// Validity of what the package makes, and how long before its end a server
// certificate is made anew.
const (
	CAValidity     = 10 * 365 * 24 * time.Hour
	ServerValidity = 825 * 24 * time.Hour
	RenewBefore    = 30 * 24 * time.Hour
)

// CA is a certificate authority whose key is on this machine.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	// CertPath is the CA's certificate: what clients trust.
	CertPath string
}

// Open loads the CA kept in dir, making it on first use: dir is created
// 0700, the key written 0600 and never over an existing file.
func Open(dir, name string) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tlsca: %w", err)
	}
	certPath, keyPath := filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile)
	cert, key, err := load(certPath, keyPath)
	if err == nil {
		if !cert.IsCA {
			return nil, fmt.Errorf("tlsca: %s is not a CA certificate", certPath)
		}
		return &CA{cert: cert, key: key, CertPath: certPath}, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	if _, kerr := os.Stat(keyPath); kerr == nil {
		return nil, fmt.Errorf("tlsca: %s exists without %s: remove it to make a new CA", keyPath, certPath)
	}
	key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("tlsca: %w", err)
	}
	tmpl, err := template(name+" CA", CAValidity)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.MaxPathLenZero = true, true, true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("tlsca: %w", err)
	}
	if err := writePair(certPath, keyPath, der, key); err != nil {
		return nil, err
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("tlsca: %w", err)
	}
	return &CA{cert: cert, key: key, CertPath: certPath}, nil
}

// CertPEM is the CA's certificate, PEM-encoded.
func (ca *CA) CertPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

// EnsureServer makes sure certPath and keyPath (0600) hold a server
// certificate of this CA for every one of hosts (IP addresses or DNS
// names), valid for more than RenewBefore; otherwise it writes a new pair
// over them. It reports whether it wrote one.
func (ca *CA) EnsureServer(certPath, keyPath string, hosts []string) (bool, error) {
	if len(hosts) == 0 {
		return false, errors.New("tlsca: a server certificate needs at least one host name or address")
	}
	if cert, _, err := load(certPath, keyPath); err == nil && ca.covers(cert, hosts) {
		return false, nil
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return false, fmt.Errorf("tlsca: %w", err)
	}
	tmpl, err := template(hosts[0], ServerValidity)
	if err != nil {
		return false, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return false, fmt.Errorf("tlsca: %w", err)
	}
	for _, p := range []string{certPath, keyPath} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("tlsca: %w", err)
		}
	}
	return true, writePair(certPath, keyPath, der, key)
}

// covers reports whether cert is this CA's, names every host and is good
// for more than RenewBefore.
func (ca *CA) covers(cert *x509.Certificate, hosts []string) bool {
	if time.Until(cert.NotAfter) < RenewBefore || cert.CheckSignatureFrom(ca.cert) != nil {
		return false
	}
	for _, h := range hosts {
		if cert.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// template is a certificate template for subject, valid from a minute ago
// (clocks differ a little) for validity.
func template(subject string, validity time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("tlsca: %w", err)
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: subject, Organization: []string{"Slipway"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     now.Add(validity),
	}, nil
}

// load reads a certificate and its ECDSA key.
func load(certPath, keyPath string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsca: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsca: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsca: %s and %s: %w", certPath, keyPath, err)
	}
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("tlsca: %s is not an ECDSA key", keyPath)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("tlsca: %s: %w", certPath, err)
	}
	return cert, key, nil
}

// writePair writes a certificate (0644) and its key (0600, never over an
// existing file).
func writePair(certPath, keyPath string, der []byte, key *ecdsa.PrivateKey) error {
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return fmt.Errorf("tlsca: %w", err)
	}
	if err := writeNew(keyPath, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return err
	}
	return writeNew(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("tlsca: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("tlsca: %s: %w", path, err)
	}
	return f.Close()
}

// Pool is a certificate pool of the PEM certificates in file: what a
// client trusts instead of the system's roots.
func Pool(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("tlsca: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("tlsca: CA file %s holds no PEM certificate", file)
	}
	return pool, nil
}

// ClientConfig is a TLS client configuration trusting only the CA
// certificates in file.
func ClientConfig(file string) (*tls.Config, error) {
	pool, err := Pool(file)
	if err != nil {
		return nil, err
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// IsUntrusted reports whether err is a TLS peer's certificate that did not
// verify: signed by an authority the client does not trust, or for another
// name. Retrying cannot fix it; giving the right CA can.
func IsUntrusted(err error) bool {
	var unknown x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	var verify *tls.CertificateVerificationError
	return errors.As(err, &unknown) || errors.As(err, &hostname) || errors.As(err, &invalid) || errors.As(err, &verify)
}

// DefaultHosts are the names a server of `slipway up` is reached by.
var DefaultHosts = []string{"127.0.0.1", "localhost", "::1"}

// Hosts is DefaultHosts and extra, without duplicates.
func Hosts(extra ...string) []string {
	out := slices.Clone(DefaultHosts)
	for _, h := range extra {
		if h != "" && !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}
