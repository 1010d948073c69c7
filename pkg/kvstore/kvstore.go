// Package kvstore keeps JSON records in a JetStream KV bucket: one store
// for every service that keeps records there.
//
// A Store[K, T] holds records of type T under keys of type K: decimal IDs
// (int64) for records numbered from the store's counter, or strings (a
// secret's UUID, "<market>.<repo>") for records named otherwise. Every
// read-modify-write is a compare-and-set on the key's revision, retried
// with a short backoff when another writer got there first; Update copies
// the record before handing it to the caller's function, which may return
// ErrNoChange to write nothing.
//
// Beside the records a store keeps, in the same bucket or in another one
// (Config.Meta):
//   - an ID counter (Config.Counter): NextID and NextIDs hand out IDs that
//     are never handed out again, however many writers race;
//   - a unique-name index (Config.Names): ClaimName, LookupName and
//     ReleaseName map a name, or an owner and a name, to the ID holding it.
//     An entry a crash left behind is taken over when its holder is no
//     longer alive by the caller's rule.
//
// Failures name the record with Config.What ("template 3", "secret
// 0b8e…"); callers match them with errors.Is: ErrNotFound, ErrExists.
package kvstore

import (
	"cmp"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// maxCASTries bounds every compare-and-set loop; each conflict means
// another writer made progress, so the bound is only hit under absurd
// contention.
const maxCASTries = 50

var (
	// ErrNotFound: no record under this key, no ID under this name.
	ErrNotFound = errors.New("not found")
	// ErrExists: Create found the key taken.
	ErrExists = errors.New("already exists")
	// ErrNoChange, returned by an Update function, writes nothing.
	ErrNoChange = errors.New("no change")
)

// Key is what records are kept under: a decimal ID or a string.
type Key interface{ int64 | string }

// Config lays out a store. Only What is required.
type Config[T any] struct {
	// What names a record in errors: "template", "VM", "image".
	What string
	// Prefix goes before every record's key: "market." keeps record 7
	// under "market.7". Records of several stores can so share a bucket.
	Prefix string
	// Meta is the bucket of the ID counter and the name index; nil means
	// the records' bucket.
	Meta jetstream.KeyValue
	// Counter is the key of the ID counter in Meta; "next-id" if empty.
	Counter string
	// Names goes before every name index key in Meta; "name." if empty.
	Names string
	// ID, if set, orders List by the records' own IDs; otherwise lists
	// follow the keys (numerically for int64 keys).
	ID func(*T) int64
	// Revision, if set, is told the KV revision of every record Get, List
	// and Update return (for Update's written record, the one written), for
	// records that carry it (saga.Saga.Revision).
	Revision func(v *T, rev uint64)
}

// Store keeps records of type T under keys of type K. See the package
// comment.
type Store[K Key, T any] struct {
	kv, meta jetstream.KeyValue
	cfg      Config[T]
}

// New returns the store of c's records in kv.
func New[K Key, T any](kv jetstream.KeyValue, c Config[T]) *Store[K, T] {
	s := &Store[K, T]{kv: kv, meta: c.Meta, cfg: c}
	if s.meta == nil {
		s.meta = kv
	}
	if s.cfg.Counter == "" {
		s.cfg.Counter = "next-id"
	}
	if s.cfg.Names == "" {
		s.cfg.Names = "name."
	}
	return s
}

// key is the KV key of record k.
func (s *Store[K, T]) key(k K) string { return s.cfg.Prefix + format(k) }

func format[K Key](k K) string {
	switch v := any(k).(type) {
	case int64:
		return strconv.FormatInt(v, 10)
	case string:
		return v
	}
	panic("unreachable")
}

// parse reads a key back; false for keys that are no record's (the
// counter, the name index, anything not decimal in an int64 store).
func (s *Store[K, T]) parse(key string) (K, bool) {
	var k K
	rest, ok := strings.CutPrefix(key, s.cfg.Prefix)
	if !ok {
		return k, false
	}
	switch p := any(&k).(type) {
	case *int64:
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil {
			return k, false
		}
		*p = id
	case *string:
		*p = rest
	}
	return k, true
}

// name is how errors call record k: "template 3".
func (s *Store[K, T]) name(k K) string { return s.cfg.What + " " + format(k) }

// Get reads record k and the revision it was read at.
func (s *Store[K, T]) Get(ctx context.Context, k K) (*T, uint64, error) {
	e, err := s.kv.Get(ctx, s.key(k))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("%s does not exist: %w", s.name(k), ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("%s: read: %w", s.name(k), err)
	}
	v, err := s.decode(k, e)
	return v, e.Revision(), err
}

func (s *Store[K, T]) decode(k K, e jetstream.KeyValueEntry) (*T, error) {
	var v T
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		return nil, fmt.Errorf("%s: decode revision %d: %w", s.name(k), e.Revision(), err)
	}
	if s.cfg.Revision != nil {
		s.cfg.Revision(&v, e.Revision())
	}
	return &v, nil
}

// Create stores v as the new record k; ErrExists when k is taken.
func (s *Store[K, T]) Create(ctx context.Context, k K, v *T) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("%s: encode: %w", s.name(k), err)
	}
	rev, err := s.kv.Create(ctx, s.key(k), b)
	if errors.Is(err, jetstream.ErrKeyExists) {
		return 0, fmt.Errorf("%s: %w", s.name(k), ErrExists)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: create: %w", s.name(k), err)
	}
	return rev, nil
}

// Put stores v as record k whatever was there: for records only one
// writer changes.
func (s *Store[K, T]) Put(ctx context.Context, k K, v *T) (uint64, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return 0, fmt.Errorf("%s: encode: %w", s.name(k), err)
	}
	rev, err := s.kv.Put(ctx, s.key(k), b)
	if err != nil {
		return 0, fmt.Errorf("%s: write: %w", s.name(k), err)
	}
	return rev, nil
}

// Update applies fn to a copy of record k and writes the result over the
// revision it read, reading again and re-applying fn when another writer
// came in between: fn must depend only on the record it is given. It
// returns the record written. fn returning ErrNoChange writes nothing:
// Update returns the record as read and changed false. Any other error of
// fn is returned as is, with the record as read.
func (s *Store[K, T]) Update(ctx context.Context, k K, fn func(*T) error) (v *T, changed bool, err error) {
	var cur, next *T
	rev, err := cas(ctx, s.kv, s.key(k), s.name(k), func(e jetstream.KeyValueEntry) ([]byte, error) {
		if e == nil {
			cur, next = nil, nil
			return nil, fmt.Errorf("%s does not exist: %w", s.name(k), ErrNotFound)
		}
		var err error
		if cur, err = s.decode(k, e); err != nil {
			return nil, err
		}
		// A second decoding is the deep copy fn may change freely.
		if next, err = s.decode(k, e); err != nil {
			return nil, err
		}
		if err := fn(next); err != nil {
			return nil, err
		}
		b, err := json.Marshal(next)
		if err != nil {
			return nil, fmt.Errorf("%s: encode: %w", s.name(k), err)
		}
		return b, nil
	})
	switch {
	case errors.Is(err, ErrNoChange):
		return cur, false, nil
	case err != nil:
		return cur, false, err
	}
	if s.cfg.Revision != nil {
		s.cfg.Revision(next, rev)
	}
	return next, true, nil
}

// Delete removes record k, leaving the bucket's history of it.
func (s *Store[K, T]) Delete(ctx context.Context, k K) error {
	if err := s.kv.Delete(ctx, s.key(k)); err != nil {
		return fmt.Errorf("%s: delete: %w", s.name(k), err)
	}
	return nil
}

// Purge removes record k and its history.
func (s *Store[K, T]) Purge(ctx context.Context, k K) error {
	if err := s.kv.Purge(ctx, s.key(k)); err != nil {
		return fmt.Errorf("%s: remove: %w", s.name(k), err)
	}
	return nil
}

// List returns every record, in the order of their keys (numerically for
// int64 keys) or of Config.ID. It is never nil.
func (s *Store[K, T]) List(ctx context.Context) ([]T, error) {
	return s.ListUnder(ctx, "")
}

// ListUnder returns the records whose keys, after Config.Prefix, start
// with under ("3." for "3.<repo>"), in List's order. A record removed
// while the list is read is left out.
func (s *Store[K, T]) ListUnder(ctx context.Context, under string) ([]T, error) {
	filter := s.cfg.Prefix + under + ">"
	var zero K
	if _, ok := any(zero).(int64); ok {
		filter = s.cfg.Prefix + "*" // decimal IDs are one token; the name index is two
	}
	w, err := s.kv.WatchFiltered(ctx, []string{filter})
	if err != nil {
		return nil, fmt.Errorf("list %ss: %w", s.cfg.What, err)
	}
	defer func() { _ = w.Stop() }()
	latest := map[string]jetstream.KeyValueEntry{}
	for done := false; !done; {
		select {
		case e := <-w.Updates():
			switch {
			case e == nil: // every key's latest value is in
				done = true
			case e.Operation() == jetstream.KeyValuePut:
				latest[e.Key()] = e
			default: // deleted or purged: gone, even if read before
				delete(latest, e.Key())
			}
		case <-ctx.Done():
			return nil, fmt.Errorf("list %ss: %w", s.cfg.What, ctx.Err())
		}
	}
	type row struct {
		k K
		v *T
	}
	rows := make([]row, 0, len(latest))
	for key, e := range latest {
		k, ok := s.parse(key)
		if !ok || !strings.HasPrefix(key, s.cfg.Prefix+under) {
			continue
		}
		v, err := s.decode(k, e)
		if err != nil {
			return nil, err
		}
		rows = append(rows, row{k, v})
	}
	slices.SortFunc(rows, func(a, b row) int {
		if s.cfg.ID != nil {
			if c := cmp.Compare(s.cfg.ID(a.v), s.cfg.ID(b.v)); c != 0 {
				return c
			}
		}
		return cmp.Compare(a.k, b.k)
	})
	out := make([]T, len(rows))
	for i, r := range rows {
		out[i] = *r.v
	}
	return out, nil
}

// NextID allocates the next ID from the counter: 0, 1, 2 … never handed
// out twice.
func (s *Store[K, T]) NextID(ctx context.Context) (int64, error) {
	return s.NextIDs(ctx, 1)
}

// NextIDs allocates n consecutive IDs and returns the first.
func (s *Store[K, T]) NextIDs(ctx context.Context, n int64) (int64, error) {
	what := "allocate " + s.cfg.What + " ID"
	if n < 1 {
		return 0, fmt.Errorf("%s: %d IDs asked for", what, n)
	}
	var first int64
	_, err := cas(ctx, s.meta, s.cfg.Counter, what, func(e jetstream.KeyValueEntry) ([]byte, error) {
		first = 0
		if e != nil {
			c, err := strconv.ParseInt(string(e.Value()), 10, 64)
			if err != nil || c < 0 {
				return nil, fmt.Errorf("%s: counter %q in %s is not a number", what, e.Value(), s.cfg.Counter)
			}
			first = c
		}
		return []byte(strconv.FormatInt(first+n, 10)), nil
	})
	if err != nil {
		return 0, err
	}
	return first, nil
}

// Name is an index entry's name: one part, or an owner and a name. Each
// part is base64url-encoded in the key, since KV keys cannot hold every
// printable character.
type Name []string

func (s *Store[K, T]) nameKey(n Name) string {
	parts := make([]string, len(n))
	for i, p := range n {
		parts[i] = base64.RawURLEncoding.EncodeToString([]byte(p))
	}
	return s.cfg.Names + strings.Join(parts, ".")
}

func (n Name) String() string { return strconv.Quote(strings.Join(n, "/")) }

// errHeld ends a claim that writes nothing.
var errHeld = errors.New("held")

// ClaimName reserves name for id and returns the ID holding it: id, or
// another one still alive. alive tells whether holder still holds the name
// (its record exists under that name); an entry whose holder is not alive,
// left by a crash, is taken over. A nil alive never takes a name over.
func (s *Store[K, T]) ClaimName(ctx context.Context, name Name, id int64, alive func(holder int64) (bool, error)) (int64, error) {
	holder := id
	what := fmt.Sprintf("claim %s name %s", s.cfg.What, name)
	_, err := cas(ctx, s.meta, s.nameKey(name), what, func(e jetstream.KeyValueEntry) ([]byte, error) {
		holder = id
		if e == nil {
			return []byte(strconv.FormatInt(id, 10)), nil
		}
		h, err := strconv.ParseInt(string(e.Value()), 10, 64)
		switch {
		case err != nil: // no ID: nobody to ask, the entry is taken over
		case h == id:
			return nil, errHeld
		case alive == nil:
			holder = h
			return nil, errHeld
		default:
			ok, err := alive(h)
			if err != nil {
				return nil, err
			}
			if ok {
				holder = h
				return nil, errHeld
			}
		}
		return []byte(strconv.FormatInt(id, 10)), nil
	})
	if err != nil && !errors.Is(err, errHeld) {
		return -1, err
	}
	return holder, nil
}

// LookupName returns the ID holding name; ErrNotFound when none does.
func (s *Store[K, T]) LookupName(ctx context.Context, name Name) (int64, error) {
	e, err := s.meta.Get(ctx, s.nameKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return -1, fmt.Errorf("no %s is named %s: %w", s.cfg.What, name, ErrNotFound)
	}
	if err != nil {
		return -1, fmt.Errorf("%s %s: %w", s.cfg.What, name, err)
	}
	id, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return -1, fmt.Errorf("%s %s: the name index holds %q", s.cfg.What, name, e.Value())
	}
	return id, nil
}

// ReleaseName drops the index entry of name if id holds it.
func (s *Store[K, T]) ReleaseName(ctx context.Context, name Name, id int64) error {
	key := s.nameKey(name)
	e, err := s.meta.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("release %s name %s: %w", s.cfg.What, name, err)
	}
	if string(e.Value()) != strconv.FormatInt(id, 10) {
		return nil
	}
	err = s.meta.Delete(ctx, key, jetstream.LastRevision(e.Revision()))
	if err != nil && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return fmt.Errorf("release %s name %s: %w", s.cfg.What, name, err)
	}
	return nil
}

// cas is the one compare-and-set loop. It reads key (step gets nil when
// there is none), writes what step makes of it (creating the key, or
// updating it only over the revision read) and, when another writer came
// in between, backs off and goes again. An error of step ends the loop
// and is returned as is. what prefixes the loop's own errors.
func cas(ctx context.Context, kv jetstream.KeyValue, key, what string, step func(jetstream.KeyValueEntry) ([]byte, error)) (uint64, error) {
	for try := range maxCASTries {
		e, err := kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			e = nil
		} else if err != nil {
			return 0, fmt.Errorf("%s: read: %w", what, err)
		}
		b, err := step(e)
		if err != nil {
			return 0, err
		}
		var rev uint64
		if e == nil {
			rev, err = kv.Create(ctx, key, b)
		} else {
			rev, err = kv.Update(ctx, key, b, e.Revision())
		}
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return 0, fmt.Errorf("%s: write: %w", what, err)
		}
		if err := Backoff(ctx, try); err != nil {
			return 0, fmt.Errorf("%s: %w", what, err)
		}
	}
	return 0, fmt.Errorf("%s: it kept changing under us", what)
}

// Backoff sleeps a little, more or less with each try, so racing writers
// spread out; it returns early with ctx's error.
func Backoff(ctx context.Context, try int) error {
	t := time.NewTimer(time.Duration(1+(try*7)%13) * time.Millisecond)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
