package cryptoluks

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// queries are crypto-luks's queries, with the requests and replies of the
// contract (schemas/qry, schemas/rpl).
func (s *Service) queries() map[string]bus.QueryHandler {
	return bus.Endpoints(
		bus.Answer(schemas.QryCryptoLUKSSecret, s.querySecret),
		bus.Answer(schemas.QryCryptoLUKSSecrets, s.querySecrets),
		bus.Answer(schemas.QryCryptoLUKSSlots, s.querySlots),
	)
}

// infoOf is a secret's metadata, as the secrets and slots queries answer
// it: never a passphrase.
func infoOf(r *Record) schemas.LuksSecret {
	si := schemas.LuksSecret{Secret: r.Secret, ImageID: r.ImageID, State: r.State, KekID: r.KEKID, Primary: int64(r.Primary),
		Pending: r.Pending != nil, CreatedAt: timestamp(r.CreatedAt), UpdatedAt: timestamp(r.UpdatedAt), Slots: []schemas.LuksSlot{}}
	for _, sl := range r.Slots {
		si.Slots = append(si.Slots, schemas.LuksSlot{Slot: int64(sl.Slot), Primary: sl.Slot == r.Primary, CreatedAt: timestamp(sl.CreatedAt)})
	}
	if r.Blob != nil {
		si.Dest, si.SHA256, si.VirtualSize = r.Blob.Dest, r.Blob.SHA256, r.Blob.VirtualSize
	}
	return si
}

// timestamp is t as JSON writes a time.Time: RFC 3339 with the
// nanoseconds it has.
func timestamp(t time.Time) string { return t.Format(time.RFC3339Nano) }

// find resolves a request naming a secret or an image.
func (s *Service) find(ctx context.Context, secret string, imageID *int64) (*Record, error) {
	if secret == "" && imageID == nil {
		return nil, bus.Invalid(errors.New("name a secret (its UUID, the image's LUKS_SECRET) or an image_id"))
	}
	var err error
	if secret == "" {
		if secret, err = s.db.lookupImage(ctx, *imageID); err != nil {
			return nil, notFound(err)
		}
	}
	rec, _, err := s.db.get(ctx, secret)
	if err != nil {
		return nil, notFound(err)
	}
	if imageID != nil && rec.ImageID != *imageID {
		return nil, bus.Invalid(fmt.Errorf("secret %s belongs to image %d, not image %d", secret, rec.ImageID, *imageID))
	}
	return rec, nil
}

func notFound(err error) error {
	if errors.Is(err, errNoSecret) {
		return bus.NotFound(err)
	}
	return err
}

// querySecret hands out a passphrase sealed to the asker's one-time key:
// whoever reads the reply on the wire sees only the box. Who may ask at
// all is NATS's to decide (see the README).
func (s *Service) querySecret(ctx context.Context, req schemas.CryptoLuksSecretRequest) (schemas.CryptoLuksSecretReply, error) {
	var none schemas.CryptoLuksSecretReply
	pub, err := sealbox.ParsePublicKeyBase64(req.PublicKey)
	if err != nil {
		return none, bus.Invalid(fmt.Errorf("public_key: %w (want base64 of a raw 32-byte X25519 public key)", err))
	}
	rec, err := s.find(ctx, req.Secret, req.ImageID)
	if err != nil {
		return none, err
	}
	if rec.State != stateReady {
		return none, bus.NotFound(fmt.Errorf("secret %s: image %d is still being encrypted", rec.Secret, rec.ImageID))
	}
	slot := rec.Primary
	if req.Slot != nil {
		slot = int(*req.Slot)
		if _, ok := rec.slot(slot); !ok {
			return none, bus.NotFound(fmt.Errorf("secret %s has no key slot %d (slots: %s)", rec.Secret, slot, luks.FormatSlots(rec.slotNumbers())))
		}
	}
	pass, err := s.passphrase(rec, slot)
	if err != nil {
		return none, err
	}
	sealed, err := sealbox.Seal(pub, pass)
	if err != nil {
		return none, bus.Invalid(fmt.Errorf("public_key: %w", err))
	}
	fp := sha256.Sum256(pub.Bytes())
	s.log.Info("passphrase handed out, sealed", "secret", rec.Secret, "image_id", rec.ImageID, "slot", slot,
		"recipient", hex.EncodeToString(fp[:8]))
	return schemas.CryptoLuksSecretReply{Secret: rec.Secret, ImageID: rec.ImageID, Slot: int64(slot),
		Sealed: base64.StdEncoding.EncodeToString(sealed)}, nil
}

// querySecrets lists every secret's metadata, or one image's.
func (s *Service) querySecrets(ctx context.Context, req schemas.CryptoLuksSecretsRequest) (schemas.CryptoLuksSecretsReply, error) {
	recs, err := s.db.secrets.List(ctx)
	if err != nil {
		return schemas.CryptoLuksSecretsReply{}, err
	}
	out := schemas.CryptoLuksSecretsReply{Secrets: []schemas.LuksSecret{}}
	for _, r := range recs {
		if req.ImageID == nil || r.ImageID == *req.ImageID {
			out.Secrets = append(out.Secrets, infoOf(&r))
		}
	}
	return out, nil
}

// querySlots describes one secret's key slots.
func (s *Service) querySlots(ctx context.Context, req schemas.CryptoLuksSlotsRequest) (schemas.LuksSecret, error) {
	rec, err := s.find(ctx, req.Secret, req.ImageID)
	if err != nil {
		return schemas.LuksSecret{}, err
	}
	return infoOf(rec), nil
}
