package cryptoluks

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// Name is the service name: subjects, durable consumer, micro service.
const Name = schemas.ServiceCryptoLUKS

// Version is reported by the micro service.
const Version = "0.1.0"

// Config tunes the service.
type Config struct {
	// Config is what every worker tunes. The scratch directory holds the
	// jobs' files (a downloaded source, the LUKS file being made or
	// amended, the secret files qemu-img reads), each removed as soon as
	// its job ends.
	worker.Config
	// Keys wraps and unwraps the data keys; required.
	Keys *keywrap.Keyring
	// IterTime is the PBKDF2 time of each new key slot; default
	// luks.DefaultIterTime.
	IterTime time.Duration
	// QemuImg is the qemu-img binary; default "qemu-img" on PATH.
	QemuImg string
	// Locations are the buckets destinations and sources are checked
	// against; zero means blob.DefaultLocations() (ConfigFromEnv reads
	// blob.LocationsFromEnv).
	Locations blob.Locations
}

// Service is crypto-luks.
type Service struct {
	bus   *bus.Bus
	store *blob.Store
	cfg   Config
	log   *slog.Logger
	keys  *keywrap.Keyring
	luks  *luks.Runner
	db    *secretStore
	w     *worker.Worker
	jobs  worker.Tracker[schemas.LuksPhase, JobStatus]
	// err is a configuration error Run reports (see NewFromEnv).
	err error
}

// New returns the service publishing on b and storing blobs in store.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	if len(cfg.Locations.DatastoreBuckets) == 0 && cfg.Locations.UploadBucket == "" {
		cfg.Locations = blob.DefaultLocations()
	}
	s := &Service{bus: b, store: store, keys: cfg.Keys}
	s.w = worker.New(b, cfg.Config, worker.Spec{
		Name: Name, Version: Version, Description: "LUKS encryption and envelope-encrypted passphrases",
		Handle:  s.handle,
		Queries: s.queries(),
		Jobs:    &s.jobs,
		Start:   s.start,
		Running: func() []any { return []any{"kek_id", s.keys.CurrentID(), "old_kek_ids", s.keys.OldIDs()} },
	})
	s.cfg, s.log = cfg, s.w.Logger()
	s.luks = &luks.Runner{Binary: cfg.QemuImg, IterTime: cfg.IterTime}
	if s.keys == nil {
		s.err = fmt.Errorf("%s: %w", Name, keywrap.ErrNoKEK)
	}
	return s
}

// Ready is closed once the service consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.w.Ready() }

// Run consumes commands and serves queries until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if s.err != nil {
		return s.err
	}
	return s.w.Run(ctx)
}

// start opens the secrets' store once the worker has its directory, which
// qemu-img is only given absolute paths under.
func (s *Service) start(ctx context.Context, dir string) (func(), error) {
	s.luks.TempDir = dir
	db, err := openStore(ctx, s.bus)
	if err != nil {
		return nil, err
	}
	s.db = db
	return nil, nil
}

// handle dispatches a command to its handler.
func (s *Service) handle(ctx context.Context, m *bus.Msg) error {
	switch m.Name {
	case schemas.CommandCryptoLUKSEncrypt:
		return s.handleEncrypt(ctx, m)
	case schemas.CommandCryptoLUKSCreate:
		return s.handleCreate(ctx, m)
	case schemas.CommandCryptoLUKSSecretDelete:
		return s.handleSecretDelete(ctx, m)
	case schemas.CommandCryptoLUKSSlotAdd, schemas.CommandCryptoLUKSSlotRemove, schemas.CommandCryptoLUKSRotate:
		return s.handleSlots(ctx, m)
	case schemas.CommandCryptoLUKSRotateKek:
		return s.handleRotateKEK(ctx, m)
	}
	return s.reject(ctx, m, fmt.Errorf("%w: unknown command %q (encrypt, create, secret-delete, slot-add, slot-remove, rotate, rotate-kek)", errInvalid, m.Subject))
}

func idToken(imageID int64) string { return worker.Token(imageID) }

// errInvalid marks a command that is wrong as sent.
var errInvalid = worker.ErrInvalid
