package market

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// The shared contract's names: every marketplace service's schemas name
// the same commands, events and endpoints with the same types
// (TestSharedContract checks it).
const (
	CommandRefresh      = "refresh"
	CommandMarketCreate = "market-create"
	CommandMarketUpdate = "market-update"
	CommandMarketDelete = "market-delete"
	CommandMarketChmod  = "market-chmod"
	CommandAppImport    = "app-import"

	EventMarketCreated = "market-created"
	EventMarketUpdated = "market-updated"
	EventMarketDeleted = "market-deleted"
	EventAppsRefreshed = "apps-refreshed"
	EventAppImported   = "app-imported"
	EventFailed        = "failed"

	QueryList    = "list"
	QueryShow    = "show"
	QueryApps    = "apps"
	QueryAppShow = "app-show"
)

// refusal is a command that can never succeed as sent: it is terminated
// with a failed event instead of retried.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(format string, args ...any) error { return &refusal{fmt.Errorf(format, args...)} }

// Refuse wraps err so that the command is terminated with a failed event
// carrying err's code and message (for a service's own commands).
func Refuse(err error) error { return &refusal{err} }

// missing refuses a command naming something that does not exist
// (code not-found).
func missing(format string, args ...any) error {
	return &refusal{bus.WithCode(schemas.CodeNotFound, fmt.Errorf(format, args...))}
}

func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// handleCommand checks a command against its schema and runs it. A command
// that is not valid, or refused, is terminated with a failed.cmd-<seq>
// event; any other error is retried. Commands beyond the shared contract
// go to the service's own handlers.
func (s *Service) handleCommand(ctx context.Context, m *bus.Msg) error {
	if h, ok := s.cfg.Commands[m.Name]; ok {
		err := h(ctx, m)
		if isRefusal(err) { // a refusal of the core's checks (UsableMarket, …)
			return s.Reject(ctx, m, err)
		}
		return err
	}
	if !schemas.Known(schemas.KindCommand, s.cfg.Service, m.Name) {
		return s.Reject(ctx, m, fmt.Errorf("%s has no command %q (commands: %s)", s.cfg.Service, m.Name, strings.Join(bus.Commands(s.cfg.Service), ", ")))
	}
	if err := schemas.Validate(schemas.KindCommand, s.cfg.Service, m.Name, m.Data); err != nil {
		return s.Reject(ctx, m, err)
	}
	var err error
	switch m.Name {
	case CommandRefresh:
		err = s.refreshCmd(ctx, m)
	case CommandMarketCreate:
		err = s.marketCreate(ctx, m)
	case CommandMarketUpdate:
		err = s.marketUpdate(ctx, m)
	case CommandMarketDelete:
		err = s.marketDelete(ctx, m)
	case CommandMarketChmod:
		err = s.marketChmod(ctx, m)
	case CommandAppImport:
		err = s.appImport(ctx, m)
	default:
		err = refuse("%s has no handler for command %q", s.cfg.Service, m.Name)
	}
	if isRefusal(err) {
		return s.Reject(ctx, m, err)
	}
	return err
}

// decode reads a payload strictly; what does not fit is refused.
func decode(m *bus.Msg, v any) error {
	if err := m.Decode(v); err != nil {
		return &refusal{err}
	}
	return nil
}

// Reject publishes failed.cmd-<seq> with cause's code and message and
// terminates the command (for a service's own commands too).
func (s *Service) Reject(ctx context.Context, m *bus.Msg, cause error) error {
	s.log.Warn("command refused", "subject", m.Subject, "ce_id", m.Envelope.ID, "err", cause)
	ev := schemas.Failure{Code: bus.CodeOr(cause, schemas.CodeConflict), Command: m.Subject, Error: schemas.ErrorText(cause.Error())}
	token := "cmd-" + strconv.FormatUint(m.StreamSeq, 10)
	if _, err := s.bus.Event(ctx, EventFailed, token, ev, CausedBy(m.Envelope, EventFailed)...); err != nil {
		return fmt.Errorf("publish failed for %s: %w (refusal: %v)", m.Subject, err, cause)
	}
	return bus.Terminal(cause)
}

func (s *Service) refreshCmd(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketRefresh
	if err := decode(m, &req); err != nil {
		return err
	}
	return s.refresh(ctx, m, req.MarketID)
}

func validName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return refuse("marketplace name %q: want 1 to 128 characters without control characters", name)
	}
	return nil
}

// driverCheck runs the driver's Validate on mk; a MAD without a driver in
// this build is accepted (its listing says so).
func (s *Service) driverCheck(mk *Market) error {
	d, ok := s.cfg.Drivers[mk.Mad]
	if !ok {
		return nil
	}
	if err := d.Validate(mk); err != nil {
		return &refusal{fmt.Errorf("marketplace %q (MAD %s): %w", mk.Name, mk.Mad, err)}
	}
	return nil
}

func (s *Service) marketCreate(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketCreate
	if err := decode(m, &req); err != nil {
		return err
	}
	mk := fromCreate(req)
	if !s.cfg.owns(mk.Mad) {
		return refuse("MAD %s is %s's, not %s's: send market-create there", mk.Mad, Owner(mk.Mad), s.cfg.Service)
	}
	if err := validName(mk.Name); err != nil {
		return err
	}
	if err := s.driverCheck(&mk); err != nil {
		return err
	}
	id, err := s.marketIDFor(ctx, m.Envelope.ID)
	if err != nil {
		return err
	}
	if err := s.store.claimName(ctx, req.Name, id); err != nil {
		return err
	}
	mk.ID, mk.CreatedAt = id, now()
	owned(&mk, m)
	if _, err := s.store.markets.Create(ctx, id, &mk); err != nil && !errors.Is(err, kvstore.ErrExists) {
		return err
	}
	if mk, err = s.store.market(ctx, id); err != nil {
		return err
	}
	if _, err := s.bus.Event(ctx, EventMarketCreated, idToken(id), mk, CausedBy(m.Envelope, EventMarketCreated)...); err != nil {
		return err
	}
	if mk.Monitoring { // list it now rather than at the next tick
		_, err = s.bus.Command(ctx, s.cfg.Service, CommandRefresh, schemas.MarketRefresh{MarketID: id}, CausedBy(m.Envelope, CommandRefresh)...)
	}
	return err
}

// fromCreate is the record a market-create describes (before its ID).
func fromCreate(req schemas.MarketCreate) Market {
	mk := Market{Name: req.Name, Mad: req.Mad, Endpoint: strings.TrimRight(req.Endpoint, "/"), Registry: req.Registry,
		Insecure: req.Insecure, Variant: req.Variant, Ftype: req.Ftype, Arches: req.Arches, ImageSizeMb: req.ImageSizeMb,
		Filesystem: req.Filesystem, Format: req.Format, PublicDir: req.PublicDir, Bucket: req.Bucket, QuotaMb: req.QuotaMb,
		Monitoring: req.Monitoring == nil || *req.Monitoring}
	if mk.Mad == "" {
		mk.Mad = schemas.MarketMADRegistry // market-create before MADs: a registry
	}
	return mk
}

// marketIDFor allocates the ID of the marketplace a market-create makes,
// once: a redelivery gets the same ID back.
func (s *Service) marketIDFor(ctx context.Context, ceID string) (int64, error) {
	key := "create." + enc(ceID)
	if e, err := s.dedup.Get(ctx, key); err == nil {
		return strconv.ParseInt(string(e.Value()), 10, 64)
	} else if !errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, err
	}
	id, err := s.store.markets.NextID(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := s.dedup.Put(ctx, key, []byte(idToken(id))); err != nil {
		return 0, err
	}
	return id, nil
}

func (s *Service) marketUpdate(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketUpdate
	if err := decode(m, &req); err != nil {
		return err
	}
	old, err := s.existingMarket(ctx, req.ID)
	if err != nil {
		return err
	}
	renamed := req.Name != nil && *req.Name != old.Name
	if renamed {
		if err := validName(*req.Name); err != nil {
			return err
		}
		if err := s.store.claimName(ctx, *req.Name, req.ID); err != nil {
			return err
		}
	}
	mk, err := s.store.updateMarket(ctx, req.ID, func(mk *Market) error {
		if err := applyUpdate(mk, req); err != nil {
			return err
		}
		return s.driverCheck(mk)
	})
	if err != nil {
		return err
	}
	if renamed {
		if err := s.store.releaseName(ctx, old.Name, old.ID); err != nil {
			return err
		}
	}
	_, err = s.bus.Event(ctx, EventMarketUpdated, idToken(mk.ID), mk, CausedBy(m.Envelope, EventMarketUpdated)...)
	return err
}

// applyUpdate changes the fields a market-update gives; those of another
// MAD's are refused rather than kept unused.
func applyUpdate(mk *Market, req schemas.MarketUpdate) error {
	registry := mk.Mad == schemas.MarketMADRegistry
	switch {
	case req.Registry != nil && !registry:
		return refuse("marketplace %d (%s) is of MAD %s: it has no registry to change", mk.ID, mk.Name, mk.Mad)
	case req.Endpoint != nil && registry:
		return refuse("marketplace %d (%s) is a registry: it has no endpoint, change its registry", mk.ID, mk.Name)
	}
	set(&mk.Name, req.Name)
	set(&mk.Monitoring, req.Monitoring)
	set(&mk.Insecure, req.Insecure)
	set(&mk.Registry, req.Registry)
	set(&mk.Variant, req.Variant)
	set(&mk.Ftype, req.Ftype)
	set(&mk.ImageSizeMb, req.ImageSizeMb)
	set(&mk.Filesystem, req.Filesystem)
	set(&mk.Format, req.Format)
	set(&mk.PublicDir, req.PublicDir)
	set(&mk.Bucket, req.Bucket)
	set(&mk.QuotaMb, req.QuotaMb)
	if req.Endpoint != nil {
		mk.Endpoint = strings.TrimRight(*req.Endpoint, "/")
	}
	if req.Arches != nil {
		mk.Arches = slices.Clone(req.Arches)
	}
	return nil
}

// set stores *v in *dst when the update gives it.
func set[T any](dst *T, v *T) {
	if v != nil {
		*dst = *v
	}
}

func (s *Service) marketDelete(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketDelete
	if err := decode(m, &req); err != nil {
		return err
	}
	mk, err := s.store.market(ctx, req.ID)
	if errors.Is(err, ErrNotFound) {
		if m.Delivered > 1 { // the first delivery finished the job
			return nil
		}
		return missing("marketplace %d does not exist", req.ID)
	}
	if err != nil {
		return err
	}
	apps, err := s.store.appsOf(ctx, req.ID)
	if err != nil {
		return err
	}
	for _, a := range apps {
		if err := s.store.deleteApp(ctx, req.ID, a.Name); err != nil {
			return err
		}
	}
	if err := s.store.releaseName(ctx, mk.Name, mk.ID); err != nil {
		return err
	}
	if err := s.store.markets.Delete(ctx, req.ID); err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, EventMarketDeleted, idToken(req.ID), schemas.MarketDeleted{ID: req.ID, Name: mk.Name},
		CausedBy(m.Envelope, EventMarketDeleted)...)
	return err
}

// marketChmod changes a marketplace's bits (only administrators send it).
func (s *Service) marketChmod(ctx context.Context, m *bus.Msg) error {
	var req schemas.MarketChmod
	if err := decode(m, &req); err != nil {
		return err
	}
	perms, err := acl.ParseOctal(req.Permissions)
	if err != nil {
		return &refusal{err}
	}
	mk, err := s.store.updateMarket(ctx, req.ID, func(mk *Market) error {
		mk.Permissions = perms.Octal()
		return nil
	})
	if errors.Is(err, ErrNotFound) {
		return missing("marketplace %d does not exist", req.ID)
	}
	if err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, EventMarketUpdated, idToken(mk.ID), mk, CausedBy(m.Envelope, EventMarketUpdated)...)
	return err
}
