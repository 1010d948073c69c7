package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// ServiceName is the service's name on the bus.
const ServiceName = schemas.ServiceMarketDockerhub

// DefaultMarketName is the marketplace of Docker Hub's official images,
// created with ID 0 on first start.
const DefaultMarketName = "DockerHub"

// commandConcurrency lets a resolve through while a long refresh runs.
const commandConcurrency = 4

// drainTimeout bounds how long Run waits for handlers in flight.
const drainTimeout = 30 * time.Second

// dedupTTL is how long a processed market-create is remembered.
const dedupTTL = 24 * time.Hour

// Service is the marketplace service. Create it with New, start it with
// Run.
type Service struct {
	bus   *bus.Bus
	cfg   Config
	log   *slog.Logger
	store *store
	dedup jetstream.KeyValue
	// hubClient talks to Hub's API through the guard, with a 1 min timeout.
	hubClient *http.Client
	// listing holds a *sync.Mutex per marketplace ID.
	listing sync.Map
	// stopping ends with Run's context: listings, unlike other handlers,
	// stop at once on shutdown (a refresh is redone, and Hub may be slow).
	stopping context.Context

	ready     chan struct{}
	readyOnce sync.Once
}

// New returns the service; b must belong to "market-dockerhub".
func New(b *bus.Bus, cfg Config) *Service {
	cfg.defaults()
	return &Service{bus: b, cfg: cfg, log: cfg.Logger.With("service", ServiceName), ready: make(chan struct{}),
		hubClient: cfg.Guard.Client(time.Minute)}
}

// Ready is closed once Run consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run sets up the KV buckets and the default marketplace, then consumes
// commands, answers queries and schedules refreshes until ctx ends. It
// then lets the handlers in flight finish (up to 30s) and returns nil.
func (s *Service) Run(ctx context.Context) error {
	if s.bus.Service() != ServiceName {
		return fmt.Errorf("market-dockerhub: the bus belongs to service %q, want %q", s.bus.Service(), ServiceName)
	}
	if err := s.cfg.validate(); err != nil {
		return fmt.Errorf("market-dockerhub: %w", err)
	}
	if err := s.setup(ctx); err != nil {
		return err
	}
	s.stopping = ctx
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	cmds, err := s.bus.ConsumeCommands(work, s.handleCommand, bus.Concurrency(commandConcurrency))
	if err != nil {
		return fmt.Errorf("market-dockerhub: %w", err)
	}
	svc, err := s.bus.Serve(s.cfg.Version, "Slipway marketplaces of container images", s.endpoints())
	if err != nil {
		cmds.Stop()
		return fmt.Errorf("market-dockerhub: %w", err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.schedule(ctx) })
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("market-dockerhub running", "prefix", s.bus.Prefix(), "refresh", s.cfg.RefreshInterval)

	<-ctx.Done()
	bus.Drain(s.log, "market-dockerhub", svc, drainTimeout, stopWork, cmds)
	wg.Wait()
	return nil
}

func (s *Service) setup(ctx context.Context) error {
	if err := s.bus.Setup(ctx); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	kv, err := s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), schemas.BucketMarketDockerhub), 0)
	if err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	if s.dedup, err = s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), schemas.BucketMarketDockerhubDedup), dedupTTL); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	s.store = newStore(kv)
	return s.ensureDefault(ctx)
}

// ensureDefault creates the DockerHub marketplace once: a deleted one
// stays deleted.
func (s *Service) ensureDefault(ctx context.Context) error {
	if _, err := s.store.kv.Get(ctx, keyInitialized); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	m := Market{ID: 0, Name: DefaultMarketName, Mad: MADDockerHub, Endpoint: s.cfg.HubAPI,
		Monitoring: !s.cfg.HubOffline, CreatedAt: now()}
	owned(&m, nil)
	if err := s.store.claimName(ctx, m.Name, m.ID); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	if _, err := s.store.markets.Put(ctx, 0, &m); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	if _, err := s.store.markets.NextID(ctx); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	if _, err := s.store.kv.Put(ctx, keyInitialized, []byte(now())); err != nil {
		return fmt.Errorf("market-dockerhub setup: %w", err)
	}
	return nil
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

func idToken(id int64) string { return strconv.FormatInt(id, 10) }

// causedBy links a message to the one that caused it, with an ID derived
// from both, so a redelivery's re-publication is dropped as a duplicate.
func causedBy(parent envelope.Envelope, what string) []bus.PubOption {
	return []bus.PubOption{bus.CausedBy(parent), bus.WithID(envelope.StepID(parent.ID, what))}
}
