package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/schemas"
)

// maxResolveDeliveries is how often a resolve that failed for a reason
// that may pass (the registry unreachable, a 5xx) is tried before the
// image is told it failed: the catalog waits for an answer either way.
const maxResolveDeliveries = 3

// resolve pins a docker:// URL to a manifest digest and answers the
// catalog with resolved.<id> or failed.<id>.
func (s *Service) resolve(ctx context.Context, m *bus.Msg) error {
	var req Resolve
	if err := m.Decode(&req); err != nil {
		return s.core.Reject(ctx, m, err)
	}
	id := strconv.FormatInt(req.ImageID, 10)
	u, err := dockerurl.Parse(req.URL)
	if err != nil {
		return s.resolveFailed(ctx, m, req.ImageID, bus.WithCode(schemas.CodeInvalidInput, err))
	}
	opts := oci.Options{DockerConfig: s.cfg.DockerConfig, Mirrors: s.cfg.Mirrors,
		Insecure: s.insecure(ctx, u.Registry), Platform: u.Arch, Guard: s.cfg.Guard}
	r, err := oci.Resolve(ctx, u.Reference(), opts)
	if err != nil {
		if !permanent(err) && m.Delivered < maxResolveDeliveries {
			err = fmt.Errorf("resolve %s (attempt %d of %d): %w", u.Reference(), m.Delivered, maxResolveDeliveries, err)
			s.publishAttempt(ctx, m, req.ImageID, err)
			return err
		}
		return s.resolveFailed(ctx, m, req.ImageID, err)
	}
	ev := Resolved{ImageID: req.ImageID, Reference: r.Reference, Digest: r.Digest,
		Platform: r.Platform, Kind: schemas.ContentKind(r.Kind), Size: r.Size}
	_, err = s.core.Bus().Event(ctx, schemas.EventMarketDockerhubResolved, id, ev, market.CausedBy(m.Envelope, schemas.EventMarketDockerhubResolved)...)
	return err
}

// resolveFailed publishes failed.<id> with cause's code and message (for
// a registry's refusal, the registry's own words) and ends the command.
func (s *Service) resolveFailed(ctx context.Context, m *bus.Msg, imageID int64, cause error) error {
	s.log.Warn("resolve failed", "image", imageID, "err", cause)
	ev := s.resolveFailure(m, imageID, cause)
	ev.Retryable = !permanent(cause)
	if _, err := s.core.Bus().Event(ctx, schemas.EventMarketDockerhubFailed, strconv.FormatInt(imageID, 10), ev, market.CausedBy(m.Envelope, schemas.EventMarketDockerhubFailed)...); err != nil {
		return fmt.Errorf("publish failed event of image %d: %w (resolve: %v)", imageID, err, cause)
	}
	return bus.Terminal(cause)
}

// publishAttempt publishes failed.<id> for a resolve attempt that failed
// and will be tried again, with when: the catalog shows it under the
// image. Its ID derives from the command's and the attempt.
func (s *Service) publishAttempt(ctx context.Context, m *bus.Msg, imageID int64, cause error) {
	ev := s.resolveFailure(m, imageID, cause)
	ev.Retryable = true
	ev.NextAttemptAt = time.Now().Add(bus.DefaultBackoff(m.Delivered)).UTC().Format(time.RFC3339)
	step := fmt.Sprintf("%s/attempt-%d", schemas.EventMarketDockerhubFailed, m.Delivered)
	if _, err := s.core.Bus().Event(ctx, schemas.EventMarketDockerhubFailed, strconv.FormatInt(imageID, 10), ev, market.CausedBy(m.Envelope, step)...); err != nil {
		s.log.Warn("failed attempt not published", "image", imageID, "err", err)
	}
}

// resolveFailure is the failed event of a resolve: its code (resolveCode),
// message, command and attempt.
func (s *Service) resolveFailure(m *bus.Msg, imageID int64, cause error) Failed {
	return Failed{Code: resolveCode(cause), ImageID: &imageID, Command: m.Subject,
		Error: schemas.ErrorText(cause.Error()), Attempt: int64(max(m.Delivered, 1)), MaxAttempts: maxResolveDeliveries}
}

// resolveCode classifies a failed resolve: an image that cannot be
// imported is invalid-input; a registry's answer by its status (404
// source-not-found, 401 access-denied, 5xx unavailable…); the way to it by
// netguard (host-not-found, tls-certificate, access-denied for a refused
// address, unavailable); the rest by bus.CodeOf.
func resolveCode(err error) string {
	var de *oci.DiskError
	var re *oci.RegistryError
	var te *transport.Error
	switch {
	case errors.As(err, &de):
		return schemas.CodeInvalidInput
	case errors.As(err, &re) && re.FailureCode() != "":
		return re.FailureCode()
	case errors.As(err, &te):
		if code := netguard.StatusCode(te.StatusCode); code != "" {
			return code
		}
	}
	if code := netguard.FailureCode(err); code != "" {
		return code
	}
	return bus.CodeOf(err)
}

// permanent tells a failure no retry changes (a registry's refusal, a host
// name that does not resolve, a refused certificate or address, an image
// that cannot be imported) from a passing one (no answer, a 5xx, rate
// limiting, a lookup that failed for now), by its code.
func permanent(err error) bool {
	code := resolveCode(err)
	c, ok := schemas.LookupErrorCode(code)
	return code != schemas.CodeInternal && ok && !c.Retryable
}

// insecure reports whether a registry marketplace for host was created
// with --insecure: its images are then pulled the same way.
func (s *Service) insecure(ctx context.Context, host string) bool {
	if host == "" {
		return false
	}
	markets, err := s.core.Markets(ctx)
	if err != nil {
		return false
	}
	for _, m := range markets {
		if m.Mad == MADRegistry && m.Registry == host && m.Insecure {
			return true
		}
	}
	return false
}
