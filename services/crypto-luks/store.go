package cryptoluks

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/crypto-luks/keywrap"
)

// Record states.
const (
	stateCreating = "creating" // the volume is being made; the secret is not handed out
	stateReady    = "ready"
)

// Record is one secret as KV keeps it (key = the secret's UUID). Nothing in
// it is a passphrase in clear: passphrases are sealed with the secret's
// data key, which is stored wrapped by the KEK.
type Record struct {
	Secret  string `json:"secret"`
	ImageID int64  `json:"image_id"`
	// Wrapped is the data key: kek_id and wrapped_key.
	keywrap.Wrapped
	// Slots are the key slots whose passphrase crypto-luks made.
	Slots []Slot `json:"slots"`
	// Primary is the slot whose passphrase the secret query hands out.
	Primary int `json:"primary"`
	// Pending is a key-slot change whose new passphrase is recorded before
	// the volume is amended, so a crash in between loses nothing.
	Pending *Pending `json:"pending,omitempty"`
	State   string   `json:"state"`
	// Blob is the stored volume as crypto-luks last wrote it.
	Blob *BlobInfo `json:"blob,omitempty"`
	// LastCommand is the ce-id of the last slot change applied, and
	// LastChange what it did: a redelivered command is answered again
	// instead of applied twice.
	LastCommand string     `json:"last_command,omitempty"`
	LastChange  *SlotDelta `json:"last_change,omitempty"`
	CreatedAt   time.Time  `json:"created_at"`
	UpdatedAt   time.Time  `json:"updated_at"`
}

// Slot is one key slot and its sealed passphrase.
type Slot struct {
	Slot int `json:"slot"`
	// Passphrase is sealed with the data key, bound to "slot-<n>".
	Passphrase []byte    `json:"passphrase"`
	CreatedAt  time.Time `json:"created_at"`
}

// Pending is a slot change in progress.
type Pending struct {
	Command string `json:"command"`
	// Slot receives the new passphrase; -1 when nothing is added.
	Slot       int    `json:"slot"`
	Passphrase []byte `json:"passphrase,omitempty"`
	Remove     []int  `json:"remove,omitempty"`
}

// SlotDelta is what a slot change did.
type SlotDelta struct {
	Added   []int `json:"added,omitempty"`
	Removed []int `json:"removed,omitempty"`
}

// BlobInfo is a stored LUKS volume.
type BlobInfo struct {
	Dest        string `json:"dest"`
	Size        int64  `json:"size"`
	SHA256      string `json:"sha256"`
	VirtualSize int64  `json:"virtual_size"`
	// S3Checksum is the checksum the store recorded for the upload
	// (blob.Info.S3Checksum); "" for a blob not uploaded by this record's
	// last change.
	S3Checksum string `json:"s3_checksum,omitempty"`
}

func slotLabel(n int) string { return "slot-" + strconv.Itoa(n) }

// slot returns the record's slot n.
func (r *Record) slot(n int) (Slot, bool) {
	i := slices.IndexFunc(r.Slots, func(s Slot) bool { return s.Slot == n })
	if i < 0 {
		return Slot{}, false
	}
	return r.Slots[i], true
}

// slotNumbers lists the record's slots, in order.
func (r *Record) slotNumbers() []int {
	out := make([]int, 0, len(r.Slots))
	for _, s := range r.Slots {
		out = append(out, s.Slot)
	}
	slices.Sort(out)
	return out
}

// errNoSecret: no record under that UUID (or for that image).
var errNoSecret = errors.New("unknown secret")

// secretStore keeps the secrets, kvstore records keyed by UUID, and the
// index of image IDs to secrets, which makes "same image, same secret"
// hold on redelivery.
type secretStore struct {
	secrets *kvstore.Store[string, Record]
	images  jetstream.KeyValue
}

func openStore(ctx context.Context, b *bus.Bus) (*secretStore, error) {
	secrets, err := b.KeyValue(ctx, schemas.BucketName(b.Prefix(), schemas.BucketCryptoLUKSSecrets), 0)
	if err != nil {
		return nil, err
	}
	images, err := b.KeyValue(ctx, schemas.BucketName(b.Prefix(), schemas.BucketCryptoLUKSImages), 0)
	if err != nil {
		return nil, err
	}
	return &secretStore{secrets: kvstore.New[string](secrets, kvstore.Config[Record]{What: "secret"}), images: images}, nil
}

// validSecret refuses a secret that is no UUID with errNoSecret.
func validSecret(secret string) error {
	if _, err := uuid.Parse(secret); err != nil {
		return fmt.Errorf("%w %q: not a UUID", errNoSecret, secret)
	}
	return nil
}

// noSecret says errNoSecret for a secret kvstore does not find.
func noSecret(secret string, err error) error {
	if errors.Is(err, kvstore.ErrNotFound) {
		return fmt.Errorf("%w %s: crypto-luks has no such secret (was its image deleted?)", errNoSecret, secret)
	}
	return err
}

func (st *secretStore) get(ctx context.Context, secret string) (*Record, uint64, error) {
	if err := validSecret(secret); err != nil {
		return nil, 0, err
	}
	r, rev, err := st.secrets.Get(ctx, secret)
	if err != nil {
		return nil, 0, noSecret(secret, err)
	}
	return r, rev, nil
}

// create writes the new record r; kvstore.ErrExists when another delivery
// made it first.
func (st *secretStore) create(ctx context.Context, r *Record) error {
	r.UpdatedAt = time.Now().UTC()
	_, err := st.secrets.Create(ctx, r.Secret, r)
	return err
}

// update applies change to the current record under compare-and-set;
// change returning kvstore.ErrNoChange writes nothing.
func (st *secretStore) update(ctx context.Context, secret string, change func(*Record) error) (*Record, error) {
	if err := validSecret(secret); err != nil {
		return nil, err
	}
	r, _, err := st.secrets.Update(ctx, secret, func(r *Record) error {
		if err := change(r); err != nil {
			return err
		}
		r.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		return nil, noSecret(secret, err)
	}
	return r, nil
}

func isConflict(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) ||
		(errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence)
}

// remove deletes a secret and its index entry; a missing one is fine.
func (st *secretStore) remove(ctx context.Context, r *Record) error {
	if err := st.secrets.Delete(ctx, r.Secret); err != nil {
		return err
	}
	key := idToken(r.ImageID)
	e, err := st.images.Get(ctx, key)
	if err == nil && string(e.Value()) == r.Secret {
		err = st.images.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	}
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) && !isConflict(err) {
		return fmt.Errorf("delete index of image %d: %w", r.ImageID, err)
	}
	return nil
}

// secretFor returns the secret UUID of image id, creating and indexing a
// new one when it has none. Two deliveries racing get the same UUID.
func (st *secretStore) secretFor(ctx context.Context, id int64) (string, error) {
	key := idToken(id)
	for range 3 {
		e, err := st.images.Get(ctx, key)
		if err == nil {
			return string(e.Value()), nil
		}
		if !errors.Is(err, jetstream.ErrKeyNotFound) {
			return "", fmt.Errorf("read index of image %d: %w", id, err)
		}
		secret := uuid.NewString()
		if _, err := st.images.Create(ctx, key, []byte(secret)); err == nil {
			return secret, nil
		} else if !isConflict(err) {
			return "", fmt.Errorf("index image %d: %w", id, err)
		}
	}
	return "", fmt.Errorf("index image %d: too many concurrent changes", id)
}

// lookupImage returns the secret of image id, if it has one.
func (st *secretStore) lookupImage(ctx context.Context, id int64) (string, error) {
	e, err := st.images.Get(ctx, idToken(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", fmt.Errorf("%w: image %d has no LUKS secret", errNoSecret, id)
	}
	if err != nil {
		return "", fmt.Errorf("read index of image %d: %w", id, err)
	}
	return string(e.Value()), nil
}
