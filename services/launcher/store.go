package launcher

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
)

// Keys beside the records (which are decimal IDs) in each bucket.
const (
	keyNextID     = "next-id"
	keyNamePrefix = "name."
)

// maxCASTries bounds read-modify-write loops; each conflict means another
// writer made progress.
const maxCASTries = 50

// errNotFound: no record with this ID or name.
var errNotFound = errors.New("not found")

// errNoChange, returned by an update function, writes nothing.
var errNoChange = errors.New("no change")

// kvStore keeps JSON records of type T under decimal IDs allocated from a
// compare-and-set counter (0, 1, 2 … never reused), as the catalog does,
// plus an optional unique-name index and the IDs of processed commands.
type kvStore[T any] struct {
	kv   jetstream.KeyValue
	what string // "template", "VM": names the record in errors
}

func idKey(id int64) string { return strconv.FormatInt(id, 10) }

// nameKey indexes names; KV keys cannot hold every printable character.
func nameKey(name string) string {
	return keyNamePrefix + base64.RawURLEncoding.EncodeToString([]byte(name))
}

// nextID allocates the next ID.
func (s *kvStore[T]) nextID(ctx context.Context) (int64, error) {
	for try := range maxCASTries {
		e, err := s.kv.Get(ctx, keyNextID)
		if isMissing(err) {
			if _, err := s.kv.Create(ctx, keyNextID, []byte("1")); err == nil {
				return 0, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return 0, fmt.Errorf("allocate %s ID: %w", s.what, err)
			}
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("allocate %s ID: read counter: %w", s.what, err)
		}
		n, err := strconv.ParseInt(string(e.Value()), 10, 64)
		if err != nil || n < 0 {
			return 0, fmt.Errorf("allocate %s ID: counter %q is not a number", s.what, e.Value())
		}
		if _, err := s.kv.Update(ctx, keyNextID, []byte(strconv.FormatInt(n+1, 10)), e.Revision()); err == nil {
			return n, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("allocate %s ID: %w", s.what, err)
		}
		if err := backoff(ctx, try); err != nil {
			return 0, err
		}
	}
	return 0, fmt.Errorf("allocate %s ID: the counter kept changing under us", s.what)
}

func isMissing(err error) bool {
	return errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted)
}

// get reads record id.
func (s *kvStore[T]) get(ctx context.Context, id int64) (*T, uint64, error) {
	e, err := s.kv.Get(ctx, idKey(id))
	if isMissing(err) {
		return nil, 0, fmt.Errorf("%s %d does not exist: %w", s.what, id, errNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s %d: read: %w", s.what, id, err)
	}
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, 0, fmt.Errorf("%s %d: decode revision %d: %w", s.what, id, e.Revision(), err)
	}
	return &v, e.Revision(), nil
}

// create stores a new record under id.
func (s *kvStore[T]) create(ctx context.Context, id int64, v *T) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %d: encode: %w", s.what, id, err)
	}
	if _, err := s.kv.Create(ctx, idKey(id), b); err != nil {
		return fmt.Errorf("%s %d: create: %w", s.what, id, err)
	}
	return nil
}

// update applies fn to the current record and writes it back unless
// someone wrote in between, retrying then. fn returning errNoChange writes
// nothing and update returns the record as read with changed false.
func (s *kvStore[T]) update(ctx context.Context, id int64, fn func(*T) error) (v *T, changed bool, err error) {
	for try := range maxCASTries {
		cur, rev, err := s.get(ctx, id)
		if err != nil {
			return nil, false, err
		}
		next, err := clone(cur)
		if err != nil {
			return nil, false, err
		}
		if err := fn(next); errors.Is(err, errNoChange) {
			return cur, false, nil
		} else if err != nil {
			return cur, false, err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return nil, false, fmt.Errorf("%s %d: encode: %w", s.what, id, err)
		}
		if _, err := s.kv.Update(ctx, idKey(id), b, rev); err == nil {
			return next, true, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return nil, false, fmt.Errorf("%s %d: write: %w", s.what, id, err)
		}
		if err := backoff(ctx, try); err != nil {
			return nil, false, err
		}
	}
	return nil, false, fmt.Errorf("%s %d: the record kept changing under us", s.what, id)
}

// clone deep-copies a record through JSON, so fn can change slices freely.
func clone[T any](v *T) (*T, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var c T
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, err
	}
	return &c, nil
}

// remove deletes record id.
func (s *kvStore[T]) remove(ctx context.Context, id int64) error {
	if err := s.kv.Purge(ctx, idKey(id)); err != nil {
		return fmt.Errorf("%s %d: remove: %w", s.what, id, err)
	}
	return nil
}

// list returns every record in ID order.
func (s *kvStore[T]) list(ctx context.Context) ([]T, error) {
	lister, err := s.kv.ListKeys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", s.what, err)
	}
	defer func() { _ = lister.Stop() }()
	var ids []int64
	for k := range lister.Keys() {
		if id, err := strconv.ParseInt(k, 10, 64); err == nil {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	out := make([]T, 0, len(ids))
	for _, id := range ids {
		v, _, err := s.get(ctx, id)
		if errors.Is(err, errNotFound) {
			continue // removed while listing
		}
		if err != nil {
			return nil, err
		}
		out = append(out, *v)
	}
	return out, nil
}

// claimName reserves name for id. taken reports whether another live record
// holds it; alive says whether a holder still exists under that name (an
// index entry left by a crash is taken over).
func (s *kvStore[T]) claimName(ctx context.Context, name string, id int64, alive func(holder int64) (bool, error)) (holder int64, err error) {
	key, val := nameKey(name), []byte(idKey(id))
	for range maxCASTries {
		e, err := s.kv.Get(ctx, key)
		if isMissing(err) {
			if _, err := s.kv.Create(ctx, key, val); err == nil {
				return id, nil
			} else if !errors.Is(err, jetstream.ErrKeyExists) {
				return -1, fmt.Errorf("claim %s name %q: %w", s.what, name, err)
			}
			continue
		}
		if err != nil {
			return -1, fmt.Errorf("claim %s name %q: %w", s.what, name, err)
		}
		h, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		if h == id {
			return id, nil
		}
		if ok, err := alive(h); err != nil {
			return -1, err
		} else if ok {
			return h, nil
		}
		if _, err := s.kv.Update(ctx, key, val, e.Revision()); err == nil {
			return id, nil
		} else if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return -1, fmt.Errorf("claim %s name %q: %w", s.what, name, err)
		}
	}
	return -1, fmt.Errorf("claim %s name %q: the index kept changing under us", s.what, name)
}

// lookupName returns the ID holding name.
func (s *kvStore[T]) lookupName(ctx context.Context, name string) (int64, error) {
	e, err := s.kv.Get(ctx, nameKey(name))
	if isMissing(err) {
		return -1, fmt.Errorf("no %s is named %q: %w", s.what, name, errNotFound)
	}
	if err != nil {
		return -1, fmt.Errorf("%s %q: %w", s.what, name, err)
	}
	id, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return -1, fmt.Errorf("%s %q: the name index holds %q", s.what, name, e.Value())
	}
	return id, nil
}

// releaseName drops the index entry of name if id holds it.
func (s *kvStore[T]) releaseName(ctx context.Context, name string, id int64) error {
	e, err := s.kv.Get(ctx, nameKey(name))
	if isMissing(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release %s name %q: %w", s.what, name, err)
	}
	if string(e.Value()) != idKey(id) {
		return nil
	}
	err = s.kv.Delete(ctx, nameKey(name), jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("release %s name %q: %w", s.what, name, err)
	}
	return nil
}

// backoff sleeps a little so racing writers spread out.
func backoff(ctx context.Context, try int) error {
	t := time.NewTimer(time.Duration(1+(try*7)%13) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
