// Package compose writes what docker-compose.yml needs to run Slipway with
// authentication and TLS: `slipway identity init DIR`, run by compose's
// one-shot "identity" service before anything else starts. DIR holds one
// directory per container, each mounted (as its own volume) only where it
// is needed, so a container sees its own secrets and no one else's:
//
//	ca/                 ca.crt, ca.key: the CA (package tlsca); init only
//	nats/               auth.conf (operator, system account, resolver
//	                    preload: identity.WriteServerConfig), server.crt,
//	                    server.key
//	minio/              public.crt, private.key (MinIO's --certs-dir), CAs/ca.crt
//	catalog/            nats.creds, ca.crt, identity/ (the keys that sign
//	                    users' JWTs: SLIPWAY_IDENTITY_DIR)
//	<service>/          nats.creds, ca.crt: each service of the schemas
//	dead-letter/        nats.creds (the catalog's principal, its own key), ca.crt
//	cli/                oneadmin.creds, ca.crt
//	console/            ca.crt: the web console offers it to browsers
//
// Keys and credentials are kept when they are there (running init again
// changes no identity and no CA); auth.conf and the copies of ca.crt are
// written anew, server certificates when they no longer fit. Each directory
// is 0700 and its files 0600 (ca.crt 0644), owned by the uid Options.Owners
// gives it: the uid its container runs as (deploy/Dockerfile).
package compose

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/tlsca"
	"github.com/slipway/slipway/schemas"
)

// Directory and file names of the layout.
const (
	DirCA         = "ca"
	DirNATS       = "nats"
	DirMinIO      = "minio"
	DirCLI        = "cli"
	DirDeadLetter = "dead-letter"
	DirConsole    = "console"
	// IdentityDir is the catalog's authority, under its directory.
	IdentityDir = "identity"
	// ServiceCreds is a service's (and the dead-letter forwarder's)
	// credentials file in its directory.
	ServiceCreds = "nats.creds"
	// AdminCreds is oneadmin's, in the CLI's directory.
	AdminCreds = "oneadmin.creds"
	// AuthConf is the nats-server configuration of the operator, in the
	// NATS directory: deploy/nats/nats.conf includes it.
	AuthConf = "auth.conf"
)

// Options tune Init.
type Options struct {
	// Operator names the NATS operator (default "slipway").
	Operator string
	// Prefix of subjects the credentials allow (default "slipway").
	Prefix string
	// Hosts are the names and addresses NATS's and MinIO's certificates
	// are for, besides 127.0.0.1, localhost and ::1.
	Hosts []string
	// Owners maps a directory of the layout ("catalog", "nats", "cli"…)
	// to the uid and gid its files belong to; directories not named keep
	// the caller's.
	Owners map[string]Owner
}

// Owner is a uid and gid.
type Owner struct{ UID, GID int }

// Dirs are the directories of the layout besides the services' own.
var Dirs = []string{DirCA, DirNATS, DirMinIO, DirDeadLetter, DirCLI, DirConsole}

// Init writes the layout into dir (made 0700 when missing).
func Init(dir string, o Options) error {
	if o.Operator == "" {
		o.Operator = "slipway"
	}
	if o.Prefix == "" {
		o.Prefix = "slipway"
	}
	for name := range o.Owners {
		if !slices.Contains(Dirs, name) && !schemas.IsService(name) {
			return fmt.Errorf("compose: no directory %q in the layout (want one of %v or a service: %v)", name, Dirs, schemas.Services())
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	auth, err := identity.Open(filepath.Join(dir, schemas.ServiceCatalog, IdentityDir), o.Operator)
	if err != nil {
		return err
	}
	ca, err := tlsca.Open(filepath.Join(dir, DirCA), o.Operator)
	if err != nil {
		return err
	}
	hosts := tlsca.Hosts(o.Hosts...)
	w := writer{dir: dir, ca: ca}
	steps := []func() error{
		func() error { return w.nats(auth, hosts) },
		func() error { return w.minio(hosts) },
		func() error {
			return w.creds(DirCLI, AdminCreds, auth, identity.User(acl.AdminUser, true), o.Prefix)
		},
		func() error {
			return w.creds(DirDeadLetter, ServiceCreds, auth, identity.Service(schemas.ServiceCatalog), o.Prefix)
		},
		func() error { return w.caOnly(DirConsole) },
	}
	for _, svc := range schemas.Services() {
		steps = append(steps, func() error { return w.creds(svc, ServiceCreds, auth, identity.Service(svc), o.Prefix) })
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
	return w.chown(o.Owners)
}

// writer writes the layout's files.
type writer struct {
	dir string
	ca  *tlsca.CA
}

// sub makes (0700) and returns the directory name of the layout.
func (w writer) sub(name string) (string, error) {
	d := filepath.Join(w.dir, name)
	if err := os.MkdirAll(d, 0o700); err != nil {
		return "", fmt.Errorf("compose: %w", err)
	}
	return d, os.Chmod(d, 0o700)
}

func (w writer) nats(auth *identity.Authority, hosts []string) error {
	d, err := w.sub(DirNATS)
	if err != nil {
		return err
	}
	var conf bytes.Buffer
	if err := auth.WriteServerConfig(&conf); err != nil {
		return err
	}
	if err := replace(filepath.Join(d, AuthConf), conf.Bytes(), 0o600); err != nil {
		return err
	}
	_, err = w.ca.EnsureServer(filepath.Join(d, "server.crt"), filepath.Join(d, "server.key"), slices.Concat(hosts, []string{DirNATS}))
	return err
}

func (w writer) minio(hosts []string) error {
	d, err := w.sub(DirMinIO)
	if err != nil {
		return err
	}
	if _, err := w.ca.EnsureServer(filepath.Join(d, "public.crt"), filepath.Join(d, "private.key"), slices.Concat(hosts, []string{DirMinIO})); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(d, "CAs"), 0o700); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	return replace(filepath.Join(d, "CAs", tlsca.CertFile), w.ca.CertPEM(), 0o644)
}

// creds writes p's credentials (kept when there) and the CA's certificate
// into directory name.
func (w writer) creds(name, file string, auth *identity.Authority, p identity.Principal, prefix string) error {
	d, err := w.sub(name)
	if err != nil {
		return err
	}
	if err := auth.EnsureCredentials(filepath.Join(d, file), p, prefix); err != nil {
		return fmt.Errorf("compose: %s: %w", name, err)
	}
	return replace(filepath.Join(d, tlsca.CertFile), w.ca.CertPEM(), 0o644)
}

// caOnly writes the CA's certificate, and nothing else, into directory
// name.
func (w writer) caOnly(name string) error {
	d, err := w.sub(name)
	if err != nil {
		return err
	}
	return replace(filepath.Join(d, tlsca.CertFile), w.ca.CertPEM(), 0o644)
}

// chown gives each named directory, and everything in it, to its owner.
func (w writer) chown(owners map[string]Owner) error {
	names := make([]string, 0, len(owners))
	for n := range owners {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		o := owners[n]
		err := filepath.Walk(filepath.Join(w.dir, n), func(path string, _ os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, o.UID, o.GID)
		})
		if err != nil {
			return fmt.Errorf("compose: give %s to %d:%d: %w", n, o.UID, o.GID, err)
		}
	}
	return nil
}

// replace writes data to path through a temporary file renamed over it,
// so a reader never sees half of it.
func replace(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	_ = os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("compose: %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("compose: %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("compose: %w", err)
	}
	return nil
}
