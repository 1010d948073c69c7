package cryptoluks

import (
	"context"
	"errors"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// handleSecretDelete forgets a secret whose image is gone. A secret that
// does not exist is not an error (the command is idempotent); one that
// belongs to another image is refused.
func (s *Service) handleSecretDelete(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.CryptoLuksSecretDelete
	if err := decode(m, &cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	rec, _, err := s.db.get(ctx, cmd.Secret)
	if errors.Is(err, errNoSecret) {
		s.log.Info("secret already gone", "secret", cmd.Secret, "image_id", cmd.ImageID)
		return nil
	}
	if err == nil && rec.ImageID != cmd.ImageID {
		err = refuse("secret %s belongs to image %d, not image %d: not deleted", cmd.Secret, rec.ImageID, cmd.ImageID)
	}
	if err == nil {
		err = s.db.remove(ctx, rec)
	}
	if err == nil {
		s.log.Info("secret deleted", "secret", cmd.Secret, "image_id", cmd.ImageID)
	}
	return s.settle(ctx, m, &cmd.ImageID, err, nil)
}
