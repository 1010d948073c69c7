package s3iam

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path/filepath"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
)

// KeysFile is the file, in a provisioning directory, of a service's keys.
func KeysFile(dir, service string) string { return filepath.Join(dir, service+".json") }

// RootKeysFile is the file of the server's root keys `slipway up`
// generates for its MinIO child.
const RootKeysFile = "root.json"

// NewKeys are fresh random keys for user name.
func NewKeys(name string) blob.Keys {
	return blob.Keys{AccessKey: name, SecretKey: randomSecret()}
}

func randomSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

// LoadOrCreateKeys reads the keys in path, or writes fresh ones for name
// (0600) when the file does not exist.
func LoadOrCreateKeys(path, name string) (blob.Keys, error) {
	k, err := blob.ReadKeys(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k = NewKeys(name)
	return k, blob.WriteKeys(path, k)
}

// Provision makes, with root's keys, what Slipway's services need on a
// MinIO server: the layout's buckets, and for each service of services
// that uses S3 a canned policy (ServicePolicy) and a user bearing it,
// whose keys it writes to KeysFile(dir, service). It is idempotent: a
// service whose keys file exists keeps its keys, its policy is rewritten
// and attached again. It returns the keys of each provisioned service.
func Provision(ctx context.Context, root blob.Config, l Layout, services []string, dir string) (map[string]blob.Keys, error) {
	return ProvisionTo(ctx, root, l, services, func(svc string) string { return KeysFile(dir, svc) })
}

// ProvisionTo is Provision writing each service's keys to keysFile(service):
// compose keeps them in the service's own secrets volume.
func ProvisionTo(ctx context.Context, root blob.Config, l Layout, services []string, keysFile func(service string) string) (map[string]blob.Keys, error) {
	store, err := blob.New(root)
	if err != nil {
		return nil, err
	}
	if err := waitInitialized(ctx, store, l.UploadBucket); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	if err := MakeBuckets(ctx, store, l); err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	admin, err := NewAdmin(root)
	if err != nil {
		return nil, err
	}
	out := map[string]blob.Keys{}
	for _, svc := range services {
		p, ok, err := ServicePolicy(svc, l)
		if err != nil {
			return nil, fmt.Errorf("provision %s: %w", svc, err)
		}
		if !ok {
			continue
		}
		k, err := provisionService(ctx, admin, svc, p, keysFile(svc))
		if err != nil {
			return nil, fmt.Errorf("provision %s: %w", svc, err)
		}
		out[svc] = k
	}
	return out, nil
}

// MakeBuckets creates those of the layout's buckets (Layout.Buckets) that
// do not exist yet.
func MakeBuckets(ctx context.Context, store *blob.Store, l Layout) error {
	for _, b := range l.Buckets() {
		if err := store.EnsureBucket(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// initTimeout bounds how long a MinIO that is live but still loading its
// state may take to serve.
const initTimeout = 30 * time.Second

// waitInitialized waits until the server answers about bucket with
// anything but 503 (MinIO's "server not initialized yet" right after it
// starts listening).
func waitInitialized(ctx context.Context, store *blob.Store, bucket string) error {
	ctx, cancel := context.WithTimeout(ctx, initTimeout)
	defer cancel()
	for {
		_, err := store.Client().BucketExists(ctx, bucket)
		if minio.ToErrorResponse(err).StatusCode != http.StatusServiceUnavailable {
			return nil // ready; a real error shows in the next call
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("S3 server not ready after %s: %w", initTimeout, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func provisionService(ctx context.Context, admin *Admin, svc string, p Policy, path string) (blob.Keys, error) {
	name := UserName(svc)
	k, err := LoadOrCreateKeys(path, name)
	if err != nil {
		return k, err
	}
	if k.AccessKey != name {
		return k, fmt.Errorf("%s holds keys of %q, not %q", path, k.AccessKey, name)
	}
	if err := admin.AddPolicy(ctx, name, p); err != nil {
		return k, err
	}
	if err := admin.AddUser(ctx, k.AccessKey, k.SecretKey); err != nil {
		return k, err
	}
	return k, admin.AttachPolicy(ctx, name, name)
}
