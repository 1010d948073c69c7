package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
)

// ServiceName is the service's name on the bus.
const ServiceName = schemas.ServiceMarketDockerhub

// DefaultMarketName and DefaultMarketID are the pre-registered DockerHub
// marketplace, as the seeds' onemarket list shows it.
const (
	DefaultMarketName       = "DockerHub"
	DefaultMarketID   int64 = 3
)

// hubTimeout bounds one request to Hub's API.
const hubTimeout = time.Minute

// Service is the marketplace core (package market) with the drivers of
// Docker Hub and of OCI registries, and the resolve step of docker://
// imports.
type Service struct {
	core      *market.Service
	cfg       Config
	log       *slog.Logger
	hubClient *http.Client // Hub's API through the guard
}

// New builds the service on b, which must be market-dockerhub's bus.
func New(b *bus.Bus, cfg Config) *Service {
	cfg.defaults()
	s := &Service{cfg: cfg, log: cfg.Logger, hubClient: cfg.Guard.Client(hubTimeout)}
	s.core = market.New(b, market.Config{
		Service:     ServiceName,
		Description: "Slipway marketplaces of container images",
		Drivers:     market.Drivers{MADDockerHub: hubDriver{s}, MADRegistry: registryDriver{s}},
		Preregistered: []Market{{ID: DefaultMarketID, Name: DefaultMarketName, Mad: MADDockerHub,
			Endpoint: cfg.HubAPI, Monitoring: !cfg.HubOffline}},
		Commands: map[string]bus.Handler{schemas.CommandMarketDockerhubResolve: s.handleResolve},
		Settings: cfg.Settings,
	})
	return s
}

// Ready is closed once the service consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.core.Ready() }

// Run runs the service until ctx ends (see market.Service.Run).
func (s *Service) Run(ctx context.Context) error {
	if err := s.cfg.Settings.Validate(EnvKernel); err != nil {
		return err
	}
	if err := s.refuseLegacyStore(ctx); err != nil {
		return err
	}
	return s.core.Run(ctx)
}

// legacyKey marks a bucket written before the shared marketplace core:
// DockerHub at ID 0, IDs and names kept in this bucket. Its IDs would
// clash with market-lxc's, so the service refuses to start on it rather
// than serve two marketplaces 0.
const legacyKey = "meta.initialized"

func (s *Service) refuseLegacyStore(ctx context.Context) error {
	name := schemas.BucketName(s.core.Bus().Prefix(), schemas.BucketMarketDockerhub)
	kv, err := s.core.Bus().JetStream().KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("market-dockerhub: open %s: %w", name, err)
	}
	if _, err := kv.Get(ctx, legacyKey); errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	} else if err != nil {
		return fmt.Errorf("market-dockerhub: read %s in %s: %w", legacyKey, name, err)
	}
	return fmt.Errorf("market-dockerhub: the KV bucket %s was written before marketplace IDs were shared with market-lxc "+
		"(DockerHub is now marketplace 3, created ones start at 100): delete the bucket (nats kv del %s) or the data directory, "+
		"and create the registry marketplaces again", name, name)
}

// handleResolve checks a resolve against its schema and runs it: an
// invalid one that names its image is answered failed.<image_id>, so the
// catalog hears of it; another is refused.
func (s *Service) handleResolve(ctx context.Context, m *bus.Msg) error {
	if err := schemas.Validate(schemas.KindCommand, ServiceName, m.Name, m.Data); err != nil {
		if id, ok := schemas.PeekImageID(m.Data); ok {
			return s.resolveFailed(ctx, m, id, err)
		}
		return s.core.Reject(ctx, m, err)
	}
	return s.resolve(ctx, m)
}
