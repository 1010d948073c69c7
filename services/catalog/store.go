package catalog

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/schemas"
)

// Keys of the meta bucket.
const (
	keyNextID          = "next-id"
	keyDatastorePrefix = "datastore."
	keyNamePrefix      = "name."
)

// maxCASTries bounds read-modify-write loops; every conflict means another
// writer made progress, so the bound is only hit under absurd contention.
const maxCASTries = 50

var (
	// ErrNotFound: no image with this ID or name.
	ErrNotFound = errors.New("image not found")
	// errNoChange, returned by an update function, writes nothing.
	errNoChange = errors.New("no change")
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

// images keeps image records (key = decimal ID) and the meta bucket's ID
// counter and name index.
type images struct {
	kv   jetstream.KeyValue
	meta jetstream.KeyValue
	now  func() string
}

func imageKey(id int64) string { return strconv.FormatInt(id, 10) }

// nameKey indexes names per owner. Names may hold any printable character,
// KV keys may not, hence base64url.
func nameKey(user, name string) string {
	enc := base64.RawURLEncoding
	return keyNamePrefix + enc.EncodeToString([]byte(user)) + "." + enc.EncodeToString([]byte(name))
}

// nextID allocates the next image ID with a compare-and-set on the
// counter, so concurrent creators never get the same ID and IDs are never
// reused.
func (s *images) nextID(ctx context.Context) (int64, error) {
	for try := 0; try < maxCASTries; try++ {
		e, err := s.meta.Get(ctx, keyNextID)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			if _, err := s.meta.Create(ctx, keyNextID, []byte("1")); err == nil {
				return 0, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("allocate image ID: %w", err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("allocate image ID: read counter: %w", err)
		}
		n, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("allocate image ID: counter %q in %s is not a number", e.Value(), keyNextID)
		}
		if _, err := s.meta.Update(ctx, keyNextID, []byte(strconv.FormatInt(n+1, 10)), e.Revision()); err == nil {
			return n, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("allocate image ID: %w", err)
		}
		if err := jitter(ctx, try); err != nil {
			return 0, err
		}
	}
	return 0, errors.New("allocate image ID: the counter kept changing under us")
}

// get reads an image and the revision it was read at.
func (s *images) get(ctx context.Context, id int64) (*schemas.Image, uint64, error) {
	e, err := s.kv.Get(ctx, imageKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, fmt.Errorf("image %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("image %d: read: %w", id, err)
	}
	var img schemas.Image
	if err := json.Unmarshal(e.Value(), &img); err != nil {
		return nil, 0, fmt.Errorf("image %d: decode revision %d: %w", id, e.Revision(), err)
	}
	return &img, e.Revision(), nil
}

// create stores a new record; it reports false when the ID is taken.
func (s *images) create(ctx context.Context, img *schemas.Image) (uint64, bool, error) {
	b, err := json.Marshal(img)
	if err != nil {
		return 0, false, fmt.Errorf("image %d: encode: %w", img.ID, err)
	}
	rev, err := s.kv.Create(ctx, imageKey(img.ID), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("image %d: create: %w", img.ID, err)
	}
	return rev, true, nil
}

// update applies fn to the current record and writes it back if nobody
// wrote in between, retrying otherwise. fn returning errNoChange writes
// nothing; update then returns the record as read with changed false.
func (s *images) update(ctx context.Context, id int64, fn func(img *schemas.Image) error) (img *schemas.Image, rev uint64, changed bool, err error) {
	for try := 0; try < maxCASTries; try++ {
		cur, curRev, err := s.get(ctx, id)
		if err != nil {
			return nil, 0, false, err
		}
		next := cloneImage(cur)
		if err := fn(next); errors.Is(err, errNoChange) {
			return cur, curRev, false, nil
		} else if err != nil {
			return cur, curRev, false, err
		}
		next.ID = cur.ID
		next.UpdatedAt = s.now()
		b, err := json.Marshal(next)
		if err != nil {
			return nil, 0, false, fmt.Errorf("image %d: encode: %w", id, err)
		}
		newRev, err := s.kv.Update(ctx, imageKey(id), b, curRev)
		if err == nil {
			return next, newRev, true, nil
		}
		if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, 0, false, fmt.Errorf("image %d: write: %w", id, err)
		}
		if err := jitter(ctx, try); err != nil {
			return nil, 0, false, err
		}
	}
	return nil, 0, false, fmt.Errorf("image %d: the record kept changing under us", id)
}

// remove deletes the record.
func (s *images) remove(ctx context.Context, id int64) error {
	if err := s.kv.Purge(ctx, imageKey(id)); err != nil {
		return fmt.Errorf("image %d: remove record: %w", id, err)
	}
	return nil
}

// list returns every image sorted by ID.
func (s *images) list(ctx context.Context) ([]schemas.Image, error) {
	lister, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	defer func() { _ = lister.Stop() }()
	var ids []int64
	for k := range lister.Keys() {
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]schemas.Image, 0, len(ids))
	for _, id := range ids {
		img, _, err := s.get(ctx, id)
		if errors.Is(err, ErrNotFound) {
			continue // deleted while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *img)
	}
	return out, nil
}

// claimName reserves name for user on behalf of image id. A name already
// held by another live image with that name is refused; an index entry left
// behind by a crash (its image is gone or renamed) is taken over.
func (s *images) claimName(ctx context.Context, user, name string, id int64) error {
	key := nameKey(user, name)
	val := []byte(strconv.FormatInt(id, 10))
	for try := 0; try < maxCASTries; try++ {
		e, err := s.meta.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
			if _, err := s.meta.Create(ctx, key, val); err == nil {
				return nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return fmt.Errorf("claim name %q: %w", name, err)
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("claim name %q: %w", name, err)
		}
		holder, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		if holder == id {
			return nil
		}
		if img, _, err := s.get(ctx, holder); err == nil && img.Name == name && img.User == user {
			return refuse("an image named %q already exists for user %s (ID %d): image names are unique per owner", name, user, holder)
		} else if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if _, err := s.meta.Update(ctx, key, val, e.Revision()); err == nil {
			return nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return fmt.Errorf("claim name %q: %w", name, err)
		}
	}
	return fmt.Errorf("claim name %q: the index kept changing under us", name)
}

// releaseName drops the index entry of name if image id still holds it.
func (s *images) releaseName(ctx context.Context, user, name string, id int64) error {
	key := nameKey(user, name)
	e, err := s.meta.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release name %q: %w", name, err)
	}
	if string(e.Value()) != strconv.FormatInt(id, 10) {
		return nil
	}
	err = s.meta.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("release name %q: %w", name, err)
	}
	return nil
}

// lookupName finds the image user holds under name.
func (s *images) lookupName(ctx context.Context, user, name string) (*schemas.Image, error) {
	e, err := s.meta.Get(ctx, nameKey(user, name))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("image %q of user %s: %w", name, user, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("image %q: %w", name, err)
	}
	id, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return nil, fmt.Errorf("image %q: name index holds %q", name, e.Value())
	}
	img, _, err := s.get(ctx, id)
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

// jitter sleeps a little so racing writers spread out.
func jitter(ctx context.Context, try int) error {
	d := time.Duration(1+(try*7)%13) * time.Millisecond
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
