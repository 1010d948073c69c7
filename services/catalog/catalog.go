package catalog

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// ServiceName is the catalog's name on the bus.
const ServiceName = schemas.ServiceCatalog

// Service is the catalog. Create it with New and start it with Run.
type Service struct {
	bus   *bus.Bus
	blobs *blob.Store
	cfg   Config
	log   *slog.Logger

	images *images
	users  *accounts
	// issuer signs users' JWTs (user-create); nil without identity keys.
	issuer *identity.Authority
	dedup  jetstream.KeyValue
	// meta holds the images' ID counter and name index, the datastores
	// and the quotas' sequence keys (quota.go).
	meta   jetstream.KeyValue
	sagas  *saga.Store
	engine *saga.Engine
	stores map[string]Datastore
	// flows are the saga declarations by kind (workflow.go).
	flows map[string]*flow
	// clones runs the copies of clone sagas (clone.go).
	clones cloneRunner

	ready     chan struct{}
	readyOnce sync.Once
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func (s *Service) locations() blob.Locations { return s.cfg.locations() }

// isDatastoreBucket reports whether bucket is a configured datastore's
// or a created one's (blob.DatastoreBucketPrefix).
func (s *Service) isDatastoreBucket(bucket string) bool {
	return s.locations().IsDatastoreBucket(bucket)
}

// imagePrefix is where an image's blobs live in its datastore's bucket.
func imagePrefix(id int64) string { return "images/" + idToken(id) + "/" }

func (s *Service) deleteURL(ctx context.Context, u string) error {
	if u == "" {
		return nil
	}
	bucket, key, err := blob.ParseURL(u)
	if err != nil {
		return nil // nothing we could have written
	}
	if err := s.blobs.Delete(ctx, bucket, key); err != nil && !blob.IsNotFound(err) {
		return fmt.Errorf("delete %s: %w", u, err)
	}
	return nil
}
