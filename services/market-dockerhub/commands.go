package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// refusal is a command that can never succeed as sent: it is terminated
// with a failed event instead of retried.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(format string, args ...any) error { return &refusal{fmt.Errorf(format, args...)} }

// missing refuses a command naming something that does not exist
// (code not-found).
func missing(format string, args ...any) error {
	return &refusal{bus.WithCode(schemas.CodeNotFound, fmt.Errorf(format, args...))}
}

func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// handleCommand checks a command against its schema and runs it. A
// command that is not valid, or refused, is terminated with a
// failed.cmd-<seq> event (resolve: failed.<image_id>, when it names an
// image); any other error is retried.
func (s *Service) handleCommand(ctx context.Context, m *bus.Msg) error {
	if !schemas.Known(schemas.KindCommand, ServiceName, m.Name) {
		return s.reject(ctx, m, fmt.Errorf("market-dockerhub has no command %q (commands: %s)", m.Name, strings.Join(bus.Commands(ServiceName), ", ")))
	}
	if err := schemas.Validate(schemas.KindCommand, ServiceName, m.Name, m.Data); err != nil {
		if m.Name == schemas.CommandMarketDockerhubResolve {
			// The catalog still hears of a resolve that names its image.
			if id, ok := schemas.PeekImageID(m.Data); ok {
				return s.resolveFailed(ctx, m, id, err)
			}
		}
		return s.reject(ctx, m, err)
	}
	var err error
	switch m.Name {
	case schemas.CommandMarketDockerhubResolve:
		return s.resolve(ctx, m)
	case schemas.CommandMarketDockerhubRefresh:
		err = s.refreshCmd(ctx, m)
	case schemas.CommandMarketDockerhubMarketCreate:
		err = s.marketCreate(ctx, m)
	case schemas.CommandMarketDockerhubMarketUpdate:
		err = s.marketUpdate(ctx, m)
	case schemas.CommandMarketDockerhubMarketDelete:
		err = s.marketDelete(ctx, m)
	case schemas.CommandMarketDockerhubMarketChmod:
		err = s.marketChmod(ctx, m)
	case schemas.CommandMarketDockerhubAppImport:
		err = s.appImport(ctx, m)
	}
	if isRefusal(err) {
		return s.reject(ctx, m, err)
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

// reject publishes failed.cmd-<seq> and terminates the command.
func (s *Service) reject(ctx context.Context, m *bus.Msg, cause error) error {
	s.log.Warn("command refused", "subject", m.Subject, "ce_id", m.Envelope.ID, "err", cause)
	ev := Failed{Code: bus.CodeOr(cause, schemas.CodeConflict), Command: m.Subject, Error: schemas.ErrorText(cause.Error())}
	token := "cmd-" + strconv.FormatUint(m.StreamSeq, 10)
	if _, err := s.bus.Event(ctx, schemas.EventMarketDockerhubFailed, token, ev, causedBy(m.Envelope, schemas.EventMarketDockerhubFailed)...); err != nil {
		return fmt.Errorf("publish failed for %s: %w (refusal: %v)", m.Subject, err, cause)
	}
	return bus.Terminal(cause)
}

func (s *Service) refreshCmd(ctx context.Context, m *bus.Msg) error {
	var req Refresh
	if err := decode(m, &req); err != nil {
		return err
	}
	return s.refresh(ctx, m, req.MarketID)
}

// validRegistry checks a registry host[:port] the way references use it.
func validRegistry(host string) error {
	if host == "" {
		return refuse("give the registry as host[:port]")
	}
	if strings.Contains(host, "://") || strings.ContainsAny(host, "/ ?#@") {
		return refuse("registry %q: want host[:port], without a scheme or a path", host)
	}
	return nil
}

func validName(name string) error {
	if strings.TrimSpace(name) == "" || len(name) > 128 || strings.ContainsFunc(name, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return refuse("marketplace name %q: want 1 to 128 characters without control characters", name)
	}
	return nil
}

func (s *Service) marketCreate(ctx context.Context, m *bus.Msg) error {
	var req MarketCreate
	if err := decode(m, &req); err != nil {
		return err
	}
	if err := validName(req.Name); err != nil {
		return err
	}
	if err := validRegistry(req.Registry); err != nil {
		return err
	}
	id, err := s.marketIDFor(ctx, m.Envelope.ID)
	if err != nil {
		return err
	}
	if err := s.store.claimName(ctx, req.Name, id); err != nil {
		return err
	}
	mk := Market{ID: id, Name: req.Name, Mad: MADRegistry, Registry: req.Registry, Insecure: req.Insecure,
		Monitoring: req.Monitoring == nil || *req.Monitoring, CreatedAt: now()}
	owned(&mk, m)
	if _, err := s.store.markets.Create(ctx, id, &mk); err != nil && !errors.Is(err, kvstore.ErrExists) {
		return err
	}
	mk, _, err = s.store.market(ctx, id)
	if err != nil {
		return err
	}
	if _, err := s.bus.Event(ctx, schemas.EventMarketDockerhubMarketCreated, idToken(id), mk, causedBy(m.Envelope, schemas.EventMarketDockerhubMarketCreated)...); err != nil {
		return err
	}
	if mk.Monitoring { // list it now rather than at the next tick
		_, err = s.bus.Command(ctx, ServiceName, schemas.CommandMarketDockerhubRefresh, Refresh{MarketID: id}, causedBy(m.Envelope, schemas.CommandMarketDockerhubRefresh)...)
	}
	return err
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
	var req MarketUpdate
	if err := decode(m, &req); err != nil {
		return err
	}
	old, _, err := s.store.market(ctx, req.ID)
	if errors.Is(err, ErrNotFound) {
		return missing("marketplace %d does not exist", req.ID)
	}
	if err != nil {
		return err
	}
	if req.Name != nil && *req.Name != old.Name {
		if err := validName(*req.Name); err != nil {
			return err
		}
		if err := s.store.claimName(ctx, *req.Name, req.ID); err != nil {
			return err
		}
	}
	mk, err := s.store.updateMarket(ctx, req.ID, func(mk *Market) error { return applyUpdate(mk, req) })
	if err != nil {
		return err
	}
	if req.Name != nil && *req.Name != old.Name {
		if err := s.store.releaseName(ctx, old.Name, old.ID); err != nil {
			return err
		}
	}
	_, err = s.bus.Event(ctx, schemas.EventMarketDockerhubMarketUpdated, idToken(mk.ID), mk, causedBy(m.Envelope, schemas.EventMarketDockerhubMarketUpdated)...)
	return err
}

func applyUpdate(mk *Market, req MarketUpdate) error {
	if req.Name != nil {
		mk.Name = *req.Name
	}
	if req.Monitoring != nil {
		mk.Monitoring = *req.Monitoring
	}
	if req.Insecure != nil {
		mk.Insecure = *req.Insecure
	}
	if req.Registry != nil {
		if mk.Mad != MADRegistry {
			return refuse("marketplace %d (%s) lists Docker Hub: it has no registry to change", mk.ID, mk.Name)
		}
		if err := validRegistry(*req.Registry); err != nil {
			return err
		}
		mk.Registry = *req.Registry
	}
	if req.Endpoint != nil {
		if mk.Mad != MADDockerHub {
			return refuse("marketplace %d (%s) is a registry: it has no Hub API endpoint", mk.ID, mk.Name)
		}
		if !strings.HasPrefix(*req.Endpoint, "http://") && !strings.HasPrefix(*req.Endpoint, "https://") {
			return refuse("endpoint %q: want an http(s):// URL", *req.Endpoint)
		}
		mk.Endpoint = strings.TrimRight(*req.Endpoint, "/")
	}
	return nil
}

func (s *Service) marketDelete(ctx context.Context, m *bus.Msg) error {
	var req MarketDelete
	if err := decode(m, &req); err != nil {
		return err
	}
	mk, _, err := s.store.market(ctx, req.ID)
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
	_, err = s.bus.Event(ctx, schemas.EventMarketDockerhubMarketDeleted, idToken(req.ID), MarketDeleted{ID: req.ID, Name: mk.Name},
		causedBy(m.Envelope, schemas.EventMarketDockerhubMarketDeleted)...)
	return err
}

// marketChmod changes a marketplace's bits (only administrators send it).
func (s *Service) marketChmod(ctx context.Context, m *bus.Msg) error {
	var req MarketChmod
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
	_, err = s.bus.Event(ctx, schemas.EventMarketDockerhubMarketUpdated, idToken(mk.ID), mk, causedBy(m.Envelope, schemas.EventMarketDockerhubMarketUpdated)...)
	return err
}
