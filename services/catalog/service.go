package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// drainTimeout bounds how long Run waits for handlers in flight when its
// context ends.
const drainTimeout = 30 * time.Second

// New returns a catalog that talks over b and keeps blobs in store. b must
// belong to the "catalog" service: its events are the catalog's.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	cfg.defaults()
	cfg.Datastores = builtins(cfg.Datastores)
	s := &Service{
		bus:    b,
		blobs:  store,
		cfg:    cfg,
		log:    cfg.Logger.With("service", ServiceName),
		stores: make(map[string]Datastore, len(cfg.Datastores)),
		ready:  make(chan struct{}),
	}
	for _, ds := range cfg.Datastores {
		s.stores[ds.Name] = ds
	}
	return s
}

// Ready is closed once Run has set everything up and consumes messages.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Run sets up streams, KV buckets and datastore buckets, then consumes
// commands and the converter's, builder's, market's and crypto-luks's
// events, republishes the workers' progress under the image, answers
// queries and reconciles sagas until ctx ends. It then stops taking new work, lets the handlers in
// flight finish (up to 30s) and returns nil.
func (s *Service) Run(ctx context.Context) error {
	if s.bus.Service() != ServiceName {
		return fmt.Errorf("catalog: the bus belongs to service %q, want %q (events would carry the wrong subject)", s.bus.Service(), ServiceName)
	}
	if err := s.setup(ctx); err != nil {
		return err
	}
	// Handlers run on a context that outlives ctx, so that a shutdown lets
	// the message in hand finish instead of cutting it in the middle.
	work, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	// Clone copies end with ctx: the next process resumes them.
	s.clones.begin(ctx)
	defer s.clones.wait()

	cmds, err := s.bus.ConsumeCommands(work, s.handleCommand, bus.Concurrency(s.cfg.Concurrency))
	if err != nil {
		return fmt.Errorf("catalog: %w", err)
	}
	p := s.bus.Prefix()
	evts, err := s.bus.ConsumeEvents(work, schemas.ConsumerCatalogEvents, s.eventFilters(), s.handleEvent, bus.Concurrency(s.cfg.Concurrency))
	if err != nil {
		cmds.Stop()
		return fmt.Errorf("catalog: %w", err)
	}
	stopProgress, err := s.republishProgress(work)
	if err != nil {
		cmds.Stop()
		evts.Stop()
		return fmt.Errorf("catalog: %w", err)
	}
	defer stopProgress()
	svc, err := s.bus.Serve(s.cfg.Version, "Slipway image catalog", s.endpoints())
	if err != nil {
		cmds.Stop()
		evts.Stop()
		return fmt.Errorf("catalog: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = s.engine.RunReconciler(ctx, s.cfg.ReconcileInterval, saga.Hooks{Expired: s.expired, Resume: s.resume})
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.reconcileImages(ctx, s.cfg.ReconcileInterval)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.every(ctx, max(s.cfg.ReconcileInterval, s.cfg.UploadExpiry/24), "sweeping the upload bucket", s.sweepUploadBucket)
	}()
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("catalog running", "prefix", p, "user", s.cfg.User)

	<-ctx.Done()
	bus.Drain(s.log, "catalog", svc, drainTimeout, stopWork, cmds, evts)
	wg.Wait()
	return nil
}

// setup creates what the catalog needs; every step is idempotent.
func (s *Service) setup(ctx context.Context) error {
	if err := s.bus.Setup(ctx); err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	kv := func(name string, ttl time.Duration) (jetstream.KeyValue, error) {
		return s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), name), ttl)
	}
	imgKV, err := kv(schemas.BucketCatalogImages, 0)
	if err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	meta, err := kv(schemas.BucketCatalogMeta, 0)
	if err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	sagaKV, err := kv(schemas.BucketCatalogSagas, 0)
	if err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	if s.dedup, err = kv(schemas.BucketCatalogDedup, DedupTTL); err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	s.images, s.meta = newImages(imgKV, meta, now), meta
	accKV, err := kv(schemas.BucketCatalogAccounts, 0)
	if err != nil {
		return fmt.Errorf("catalog setup: %w", err)
	}
	s.users = newAccounts(accKV)
	if err := s.users.bootstrap(ctx); err != nil {
		return fmt.Errorf("catalog setup: users and groups: %w", err)
	}
	if s.cfg.IdentityDir != "" {
		if s.issuer, err = identity.Load(s.cfg.IdentityDir, "slipway"); err != nil {
			return fmt.Errorf("catalog setup: %w", err)
		}
		// The server starts from its configured account JWT, without
		// the revocations: deleted users are refused again from here.
		if err := s.pushRevocations(ctx); err != nil {
			return fmt.Errorf("catalog setup: %w", err)
		}
		s.pushOnReconnect(context.WithoutCancel(ctx))
	}
	s.sagas = saga.NewStore(sagaKV)
	s.engine = saga.NewEngine(s.sagas, s.declare(s.sagaFlows()...)...)
	s.engine.Logger = s.log
	buckets := []string{s.cfg.UploadBucket}
	for _, ds := range s.cfg.Datastores {
		buckets = append(buckets, ds.Bucket)
		if err := s.putDatastore(ctx, meta, ds); err != nil {
			return err
		}
	}
	for _, b := range buckets {
		if err := s.blobs.EnsureBucket(ctx, b); err != nil {
			return fmt.Errorf("catalog setup: %w", err)
		}
	}
	return nil
}

// sagaFlows are the sagas the catalog runs, each declared in its file.
func (s *Service) sagaFlows() []*flow {
	return append([]*flow{s.importFlow(), s.dockerFlow(), s.rootfsFlow(), s.ovaFlow(), s.slotsFlow(), s.cloneFlow(), s.snapshotFlow()}, s.luksFlows()...)
}

func (s *Service) putDatastore(ctx context.Context, meta jetstream.KeyValue, ds Datastore) error {
	// The configuration says what the datastore is; datastore-chown and
	// -chmod, who owns and may use it: those stay.
	rec, _, err := s.readDatastore(ctx, ds.Name)
	if err != nil {
		return fmt.Errorf("catalog setup: datastore %s: %w", ds.Name, err)
	}
	if rec != nil && rec.User != "" {
		ds = withOwnership(ds, *rec)
	}
	b, err := json.Marshal(ds)
	if err != nil {
		return err
	}
	if _, err := meta.Put(ctx, keyDatastorePrefix+ds.Name, b); err != nil {
		return fmt.Errorf("catalog setup: record datastore %s: %w", ds.Name, err)
	}
	return nil
}
