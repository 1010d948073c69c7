package marketdockerhub

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
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
		return s.reject(ctx, m, err)
	}
	id := idToken(req.ImageID)
	u, err := dockerurl.Parse(req.URL)
	if err != nil {
		return s.resolveFailed(ctx, m, req.ImageID, err)
	}
	opts := oci.Options{DockerConfig: s.cfg.DockerConfig, Mirrors: s.cfg.Mirrors,
		Insecure: s.insecure(ctx, u.Registry), Platform: u.Arch, Guard: s.cfg.Guard}
	r, err := oci.Resolve(ctx, u.Reference(), opts)
	if err != nil {
		if !permanent(err) && m.Delivered < maxResolveDeliveries {
			return fmt.Errorf("resolve %s (attempt %d of %d): %w", u.Reference(), m.Delivered, maxResolveDeliveries, err)
		}
		return s.resolveFailed(ctx, m, req.ImageID, err)
	}
	ev := Resolved{ImageID: req.ImageID, Reference: r.Reference, Digest: r.Digest,
		Platform: r.Platform, Kind: schemas.ContentKind(r.Kind), Size: r.Size}
	_, err = s.bus.Event(ctx, EvtResolved, id, ev, causedBy(m.Envelope, EvtResolved)...)
	return err
}

// resolveFailed publishes failed.<id> with cause's message (for a
// registry's refusal, the registry's own words) and ends the command.
func (s *Service) resolveFailed(ctx context.Context, m *bus.Msg, imageID int64, cause error) error {
	s.log.Warn("resolve failed", "image", imageID, "err", cause)
	ev := Failed{ImageID: imageID, Error: schemas.ErrorText(cause.Error())}
	if _, err := s.bus.Event(ctx, EvtFailed, idToken(imageID), ev, causedBy(m.Envelope, EvtFailed)...); err != nil {
		return fmt.Errorf("publish failed event of image %d: %w (resolve: %v)", imageID, err, cause)
	}
	return bus.Terminal(cause)
}

// permanent tells a registry's refusal (unknown repository or tag,
// denied, bad request), an address the guard refuses, or an image that
// cannot be imported, which no retry changes, from a passing failure (no
// answer, a 5xx, rate limiting).
func permanent(err error) bool {
	var de *oci.DiskError
	if errors.As(err, &de) {
		return true
	}
	if _, ok := netguard.AsRefused(err); ok {
		return true // the same address is refused next time
	}
	status := 0
	var re *oci.RegistryError
	var te *transport.Error
	switch {
	case errors.As(err, &re):
		status = re.Status
	case errors.As(err, &te):
		status = te.StatusCode
	}
	switch status {
	case http.StatusRequestTimeout, http.StatusTooManyRequests:
		return false
	}
	return status >= 400 && status < 500
}

// insecure reports whether a registry marketplace for host was created
// with --insecure: its images are then pulled the same way.
func (s *Service) insecure(ctx context.Context, host string) bool {
	if host == "" {
		return false
	}
	markets, err := s.store.markets.List(ctx)
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
