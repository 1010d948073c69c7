package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// keyDatastorePrefix keys the datastores in the meta bucket, beside the
// images' ID counter and name index.
const keyDatastorePrefix = "datastore."

var (
	// ErrNotFound: no image with this ID or name.
	ErrNotFound = kvstore.ErrNotFound
	// errNoChange, returned by an update function, writes nothing.
	errNoChange = kvstore.ErrNoChange
)

// refusal is an error a person caused: the command is refused, a failed
// event says why, and retrying cannot help.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(format string, args ...any) error { return &refusal{fmt.Errorf(format, args...)} }

func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// images keeps image records (key = decimal ID), and in the meta bucket
// their ID counter ("next-id") and the index of names per owner
// ("name.<base64url user>.<base64url name>").
type images struct {
	*kvstore.Store[int64, schemas.Image]
	now func() string
}

func newImages(kv, meta jetstream.KeyValue, now func() string) *images {
	return &images{Store: kvstore.New[int64](kv, kvstore.Config[schemas.Image]{What: "image", Meta: meta}), now: now}
}

// Update is kvstore's Update that keeps the image's ID and stamps
// UpdatedAt on every change.
func (s *images) Update(ctx context.Context, id int64, fn func(img *schemas.Image) error) (img *schemas.Image, changed bool, err error) {
	return s.Store.Update(ctx, id, func(img *schemas.Image) error {
		keep := img.ID
		if err := fn(img); err != nil {
			return err
		}
		img.ID, img.UpdatedAt = keep, s.now()
		return nil
	})
}

// existing reads image id; a missing image is a refusal (the command
// named it).
func (s *images) existing(ctx context.Context, id int64) (*schemas.Image, error) {
	img, _, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return nil, refuse("image %d does not exist", id)
	}
	return img, err
}

// recordsBlob reports whether image id records u as its blob; an image
// that does not exist records nothing.
func (s *images) recordsBlob(ctx context.Context, id int64, u string) (bool, error) {
	img, _, err := s.Get(ctx, id)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil && img.Source == u, err
}

// claimName reserves name for user on behalf of image id. A name already
// held by another live image with that name is refused; an index entry left
// behind by a crash (its image is gone or renamed) is taken over.
func (s *images) claimName(ctx context.Context, user, name string, id int64) error {
	holder, err := s.ClaimName(ctx, kvstore.Name{user, name}, id, func(holder int64) (bool, error) {
		img, _, err := s.Get(ctx, holder)
		if errors.Is(err, ErrNotFound) {
			return false, nil
		}
		return err == nil && img.Name == name && img.User == user, err
	})
	if err == nil && holder != id {
		return refuse("an image named %q already exists for user %s (ID %d): image names are unique per owner", name, user, holder)
	}
	return err
}

// releaseName drops the index entry of name if image id still holds it.
func (s *images) releaseName(ctx context.Context, user, name string, id int64) error {
	return s.ReleaseName(ctx, kvstore.Name{user, name}, id)
}

// lookupName finds the image user holds under name.
func (s *images) lookupName(ctx context.Context, user, name string) (*schemas.Image, error) {
	id, err := s.LookupName(ctx, kvstore.Name{user, name})
	if err != nil {
		return nil, err
	}
	img, _, err := s.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	if img.Name != name || img.User != user {
		return nil, fmt.Errorf("image %q of user %s: %w", name, user, ErrNotFound)
	}
	return img, nil
}

func cloneImage(img *schemas.Image) *schemas.Image {
	c := *img
	if img.Attributes != nil {
		c.Attributes = make(map[string]string, len(img.Attributes))
		for k, v := range img.Attributes {
			c.Attributes[k] = v
		}
	}
	return &c
}

// decode reads a schema-valid payload; what still does not fit the Go type
// is the sender's fault, so it is a refusal.
func decode(m *bus.Msg, v any) error {
	if err := m.Decode(v); err != nil {
		return &refusal{err}
	}
	return nil
}
