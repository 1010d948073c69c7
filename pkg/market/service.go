package market

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// commandConcurrency bounds the commands handled at once: a refresh is a
// long listing, and an import waits for the catalog.
const commandConcurrency = 8

// dedupTTL is how long the answer of a command is remembered: longer than
// JetStream's redeliveries of it.
const dedupTTL = 24 * time.Hour

// DrainTimeout bounds how long Run waits for handlers in flight.
const DrainTimeout = 30 * time.Second

// Service is a marketplace service: the core with its drivers.
type Service struct {
	bus      *bus.Bus
	cfg      Config
	log      *slog.Logger
	store    *store
	dedup    jetstream.KeyValue
	listing  sync.Map        // market ID → *sync.Mutex: one listing at a time per replica
	stopping context.Context // ends when Run's ctx does: listings stop with it

	ready     chan struct{}
	readyOnce sync.Once
}

// New builds the service on b, which must be the service's own bus
// (cfg.Service).
func New(b *bus.Bus, cfg Config) *Service {
	cfg.Settings.Defaults()
	return &Service{bus: b, cfg: cfg, log: cfg.Logger.With("service", cfg.Service),
		stopping: context.Background(), ready: make(chan struct{})}
}

// Ready is closed once the service consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Bus is the service's bus (a service's own commands use it).
func (s *Service) Bus() *bus.Bus { return s.bus }

// Markets lists the service's marketplaces (market-dockerhub's resolve
// looks for a registry's --insecure).
func (s *Service) Markets(ctx context.Context) ([]Market, error) { return s.store.markets.List(ctx) }

// Run sets up the KV buckets and the pre-registered marketplaces, then
// consumes commands, answers queries and schedules refreshes until ctx
// ends. It then lets the handlers in flight finish (up to 30s) and returns
// nil.
func (s *Service) Run(ctx context.Context) error {
	name := s.cfg.Service
	if s.bus.Service() != name {
		return fmt.Errorf("%s: the bus belongs to service %q", name, s.bus.Service())
	}
	if _, ok := buckets[name]; !ok {
		return fmt.Errorf("%s is not a marketplace service (package market knows %v)", name, Services())
	}
	if err := s.setup(ctx); err != nil {
		return fmt.Errorf("%s setup: %w", name, err)
	}
	s.stopping = ctx
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	cmds, err := s.bus.ConsumeCommands(work, s.handleCommand, bus.Concurrency(commandConcurrency))
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	svc, err := s.bus.Serve(s.cfg.Version, s.cfg.Description, s.endpoints())
	if err != nil {
		cmds.Stop()
		return fmt.Errorf("%s: %w", name, err)
	}
	var wg sync.WaitGroup
	wg.Go(func() { s.schedule(ctx) })
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info(name+" running", "prefix", s.bus.Prefix(), "refresh", s.cfg.RefreshInterval)

	<-ctx.Done()
	bus.Drain(s.log, name, svc, DrainTimeout, stopWork, cmds)
	wg.Wait()
	return nil
}

func (s *Service) setup(ctx context.Context) error {
	if err := s.bus.Setup(ctx); err != nil {
		return err
	}
	own := buckets[s.cfg.Service]
	kv, err := s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), own[0]), 0)
	if err != nil {
		return err
	}
	ids, err := s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), schemas.BucketMarketIDs), 0)
	if err != nil {
		return err
	}
	if s.dedup, err = s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), own[1]), dedupTTL); err != nil {
		return err
	}
	s.store = newStore(kv, ids)
	if err := s.store.startCounters(ctx); err != nil {
		return err
	}
	for _, mk := range s.cfg.Preregistered {
		if err := s.preregister(ctx, mk); err != nil {
			return err
		}
	}
	return nil
}

// preregister creates a pre-registered marketplace once: a deleted one
// stays deleted.
func (s *Service) preregister(ctx context.Context, mk Market) error {
	key := keyPreregistered + idToken(mk.ID)
	if _, err := s.store.kv.Get(ctx, key); err == nil {
		return nil
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return err
	}
	if mk.ID >= FirstCreatedID {
		return fmt.Errorf("pre-registered marketplace %q: ID %d is not below %d", mk.Name, mk.ID, FirstCreatedID)
	}
	if !s.cfg.owns(mk.Mad) {
		return fmt.Errorf("pre-registered marketplace %q: MAD %s is %s's", mk.Name, mk.Mad, Owner(mk.Mad))
	}
	mk.CreatedAt = now()
	owned(&mk, nil)
	if err := s.store.claimName(ctx, mk.Name, mk.ID); err != nil {
		return err
	}
	if _, err := s.store.markets.Put(ctx, mk.ID, &mk); err != nil {
		return err
	}
	_, err := s.store.kv.Put(ctx, key, []byte(now()))
	return err
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// CausedBy links a message to the one that caused it, with an ID derived
// from both, so a redelivery's re-publication is dropped as a duplicate.
func CausedBy(parent envelope.Envelope, what string) []bus.PubOption {
	return []bus.PubOption{bus.CausedBy(parent), bus.WithID(envelope.StepID(parent.ID, what))}
}

// defaultPerms are OpenNebula's own marketplaces' bits: owner uma, group
// and others u--. Every marketplace starts with them.
const defaultPerms acl.Perms = 0o744

// HandleCommand runs one command as the service's consumer does: the
// tests of a service replay redeliveries with it.
func (s *Service) HandleCommand(ctx context.Context, m *bus.Msg) error {
	return s.handleCommand(ctx, m)
}

// ImportAnswerKey is the key, in the service's dedup bucket, of the
// catalog's answer to the import whose command had ce-id ceID.
func ImportAnswerKey(ceID string) string { return "import." + enc(ceID) }
