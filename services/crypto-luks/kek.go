package cryptoluks

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// handleRotateKEK re-wraps every data key with the current KEK. Each
// record changes by compare-and-set, so a slot change racing it is not
// lost; a record wrapped by a KEK the service lacks fails the command,
// naming it, after every other record was re-wrapped.
func (s *Service) handleRotateKEK(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.CryptoLuksRotateKEK
	if err := decode(m, &cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	ev, err := s.rotateKEK(ctx, cmd)
	if err == nil {
		err = s.publish(ctx, m, schemas.EventCryptoLUKSKekRotated, ev.KekID, ev)
	}
	return s.settle(ctx, m, nil, err, nil)
}

func (s *Service) rotateKEK(ctx context.Context, cmd schemas.CryptoLuksRotateKEK) (schemas.CryptoLuksKEKRotated, error) {
	cur := s.keys.CurrentID()
	ev := schemas.CryptoLuksKEKRotated{KekID: cur, OldKekIds: s.keys.OldIDs()}
	if cmd.ExpectKekID != "" && cmd.ExpectKekID != cur {
		return ev, refuse("the current KEK is %s, not %s as the command expects: configure the new KEK (SLIPWAY_LUKS_KEK_FILE) and restart crypto-luks first", cur, cmd.ExpectKekID)
	}
	recs, err := s.db.secrets.List(ctx)
	if err != nil {
		return ev, err
	}
	var failed []string
	for _, r := range recs {
		ev.Secrets++
		changed := false
		_, err := s.db.update(ctx, r.Secret, func(r *Record) error {
			w, ch, err := s.keys.Rewrap(r.Secret, r.Wrapped)
			if err != nil {
				return terminal(err)
			}
			if !ch {
				return kvstore.ErrNoChange
			}
			r.Wrapped, changed = w, true
			return nil
		})
		switch {
		case errors.Is(err, errNoSecret):
		case err != nil && isTerminal(err):
			failed = append(failed, err.Error())
		case err != nil:
			return ev, err
		}
		if changed {
			ev.Rewrapped++
		}
	}
	s.log.Info("KEK rotation", "kek_id", cur, "secrets", ev.Secrets, "rewrapped", ev.Rewrapped, "failed", len(failed))
	if len(failed) > 0 {
		return ev, terminal(fmt.Errorf("%d of %d secrets could not be re-wrapped with KEK %s (list their old KEK files in SLIPWAY_LUKS_OLD_KEK_FILES): %s",
			len(failed), ev.Secrets, cur, strings.Join(failed, "; ")))
	}
	return ev, nil
}
