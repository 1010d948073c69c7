package cryptoluks

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/sealbox"
)

// SecretRequest asks for a passphrase, sealed to PublicKey.
type SecretRequest struct {
	// Secret is the secret's UUID (the image's LUKS_SECRET); or ImageID.
	Secret  string `json:"secret,omitempty"`
	ImageID *int64 `json:"image_id,omitempty"`
	// PublicKey is the asker's one-time X25519 public key, base64.
	PublicKey string `json:"public_key"`
	// Slot picks a slot's passphrase; default the primary slot.
	Slot *int `json:"slot,omitempty"`
}

// SecretReply carries the passphrase sealed to the request's key.
type SecretReply struct {
	Secret  string `json:"secret"`
	ImageID int64  `json:"image_id"`
	Slot    int    `json:"slot"`
	// Sealed is sealbox.Seal(public_key, passphrase), base64.
	Sealed string `json:"sealed"`
}

// SlotInfo describes a key slot, never its passphrase.
type SlotInfo struct {
	Slot      int       `json:"slot"`
	Primary   bool      `json:"primary"`
	CreatedAt time.Time `json:"created_at"`
}

// SecretInfo is a secret's metadata, as the secrets and slots queries
// answer.
type SecretInfo struct {
	Secret      string     `json:"secret"`
	ImageID     int64      `json:"image_id"`
	State       string     `json:"state"`
	KEKID       string     `json:"kek_id"`
	Primary     int        `json:"primary"`
	Slots       []SlotInfo `json:"slots"`
	Pending     bool       `json:"pending,omitempty"`
	Dest        string     `json:"dest,omitempty"`
	SHA256      string     `json:"sha256,omitempty"`
	VirtualSize int64      `json:"virtual_size,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

func infoOf(r *Record) SecretInfo {
	si := SecretInfo{Secret: r.Secret, ImageID: r.ImageID, State: r.State, KEKID: r.KEKID, Primary: r.Primary,
		Pending: r.Pending != nil, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt, Slots: []SlotInfo{}}
	for _, sl := range r.Slots {
		si.Slots = append(si.Slots, SlotInfo{Slot: sl.Slot, Primary: sl.Slot == r.Primary, CreatedAt: sl.CreatedAt})
	}
	if r.Blob != nil {
		si.Dest, si.SHA256, si.VirtualSize = r.Blob.Dest, r.Blob.SHA256, r.Blob.VirtualSize
	}
	return si
}

// strictJSON decodes a query body, refusing unknown fields; an empty body
// is an empty request.
func strictJSON(data []byte, v any) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return bus.Invalid(fmt.Errorf("request: %w", err))
	}
	return nil
}

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
func (s *Service) querySecret(ctx context.Context, data []byte) (any, error) {
	var req SecretRequest
	if err := strictJSON(data, &req); err != nil {
		return nil, err
	}
	pub, err := sealbox.ParsePublicKeyBase64(req.PublicKey)
	if err != nil {
		return nil, bus.Invalid(fmt.Errorf("public_key: %w (want base64 of a raw 32-byte X25519 public key)", err))
	}
	rec, err := s.find(ctx, req.Secret, req.ImageID)
	if err != nil {
		return nil, err
	}
	if rec.State != stateReady {
		return nil, bus.NotFound(fmt.Errorf("secret %s: image %d is still being encrypted", rec.Secret, rec.ImageID))
	}
	slot := rec.Primary
	if req.Slot != nil {
		slot = *req.Slot
		if _, ok := rec.slot(slot); !ok {
			return nil, bus.NotFound(fmt.Errorf("secret %s has no key slot %d (slots: %s)", rec.Secret, slot, ints(rec.slotNumbers())))
		}
	}
	pass, err := s.passphrase(rec, slot)
	if err != nil {
		return nil, err
	}
	sealed, err := sealbox.Seal(pub, pass)
	if err != nil {
		return nil, bus.Invalid(fmt.Errorf("public_key: %w", err))
	}
	fp := sha256.Sum256(pub.Bytes())
	s.log.Info("passphrase handed out, sealed", "secret", rec.Secret, "image_id", rec.ImageID, "slot", slot,
		"recipient", hex.EncodeToString(fp[:8]))
	return SecretReply{Secret: rec.Secret, ImageID: rec.ImageID, Slot: slot,
		Sealed: base64.StdEncoding.EncodeToString(sealed)}, nil
}

// querySecrets lists every secret's metadata, or one image's.
func (s *Service) querySecrets(ctx context.Context, data []byte) (any, error) {
	var req struct {
		ImageID *int64 `json:"image_id,omitempty"`
	}
	if err := strictJSON(data, &req); err != nil {
		return nil, err
	}
	recs, err := s.db.secrets.List(ctx)
	if err != nil {
		return nil, err
	}
	out := []SecretInfo{}
	for _, r := range recs {
		if req.ImageID == nil || r.ImageID == *req.ImageID {
			out = append(out, infoOf(&r))
		}
	}
	return map[string]any{"secrets": out}, nil
}

// querySlots describes one secret's key slots.
func (s *Service) querySlots(ctx context.Context, data []byte) (any, error) {
	var req struct {
		Secret  string `json:"secret,omitempty"`
		ImageID *int64 `json:"image_id,omitempty"`
	}
	if err := strictJSON(data, &req); err != nil {
		return nil, err
	}
	rec, err := s.find(ctx, req.Secret, req.ImageID)
	if err != nil {
		return nil, err
	}
	return infoOf(rec), nil
}
