package kvstore_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/testenv"
)

type rec struct {
	ID    int64    `json:"id"`
	Name  string   `json:"name"`
	N     int      `json:"n"`
	Items []string `json:"items,omitempty"`
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// buckets makes n fresh KV buckets (history 5, as the services' are) on a
// real in-process nats-server.
func buckets(t *testing.T, n int) []jetstream.KeyValue {
	t.Helper()
	url, _ := testenv.NATS(t)
	js := testenv.JetStream(t, url)
	out := make([]jetstream.KeyValue, n)
	for i := range out {
		var err error
		out[i], err = js.CreateKeyValue(testCtx(t), jetstream.KeyValueConfig{Bucket: fmt.Sprintf("b%d", i), History: 5})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func newStore(t *testing.T) (*kvstore.Store[int64, rec], jetstream.KeyValue) {
	kv := buckets(t, 1)[0]
	return kvstore.New[int64](kv, kvstore.Config[rec]{What: "thing"}), kv
}

func TestNextIDUniqueUnderConcurrency(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	const workers, each = 6, 15
	var mu sync.Mutex
	var got []int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				id, err := s.NextID(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				got = append(got, id)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.Sort(got)
	for i, id := range got {
		if id != int64(i) {
			t.Fatalf("IDs %v: want 0..%d, each once", got, workers*each-1)
		}
	}
	// A range starts where the singles ended and moves the counter past it.
	first, err := s.NextIDs(ctx, 10)
	if err != nil || first != workers*each {
		t.Fatalf("NextIDs(10) = %d, %v; want %d", first, err, workers*each)
	}
	if id, err := s.NextID(ctx); err != nil || id != first+10 {
		t.Fatalf("NextID after a range = %d, %v; want %d", id, err, first+10)
	}
	if _, err := s.NextIDs(ctx, 0); err == nil {
		t.Error("NextIDs(0) succeeded")
	}
}

func TestConcurrentUpdatesAllLand(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	if _, err := s.Create(ctx, 7, &rec{ID: 7}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 5, 8
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				_, changed, err := s.Update(ctx, 7, func(r *rec) error {
					r.N++
					r.Items = append(r.Items, fmt.Sprintf("%d-%d", w, i))
					return nil
				})
				if err != nil || !changed {
					t.Errorf("update: changed %v, %v", changed, err)
					return
				}
			}
		})
	}
	wg.Wait()
	r, _, err := s.Get(ctx, 7)
	if err != nil {
		t.Fatal(err)
	}
	if r.N != workers*each || len(r.Items) != workers*each {
		t.Fatalf("N = %d with %d items, want %d: an update was lost", r.N, len(r.Items), workers*each)
	}

	// A writer that gets in between the read and the write: fn runs
	// again on what that writer wrote.
	calls := 0
	v, changed, err := s.Update(ctx, 7, func(r *rec) error {
		calls++
		if calls == 1 {
			if _, _, err := s.Update(ctx, 7, func(o *rec) error { o.Items = append(o.Items, "other"); return nil }); err != nil {
				t.Error(err)
			}
		}
		r.Items = append(r.Items, "mine")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if end := v.Items[len(v.Items)-2:]; !changed || calls != 2 || !slices.Equal(end, []string{"other", "mine"}) {
		t.Fatalf("update raced by another writer: fn ran %d times, items end %q, changed %v", calls, end, changed)
	}
}

func TestUpdateCopiesAndNoChange(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	rev0, err := s.Create(ctx, 1, &rec{ID: 1, Items: []string{"a"}})
	if err != nil {
		t.Fatal(err)
	}
	v, changed, err := s.Update(ctx, 1, func(r *rec) error {
		r.Items[0] = "changed in place" // the caller's copy: nothing is written
		return kvstore.ErrNoChange
	})
	if err != nil || changed || v.Items[0] != "a" {
		t.Fatalf("ErrNoChange: %+v changed %v err %v", v, changed, err)
	}
	if _, rev, _ := s.Get(ctx, 1); rev != rev0 {
		t.Fatalf("ErrNoChange wrote: revision %d, want %d", rev, rev0)
	}
	stop := errors.New("refused")
	v, changed, err = s.Update(ctx, 1, func(r *rec) error { r.N = 99; return stop })
	if !errors.Is(err, stop) || changed || v.N != 0 {
		t.Fatalf("fn's error: %+v changed %v err %v", v, changed, err)
	}
	if _, rev, _ := s.Get(ctx, 1); rev != rev0 {
		t.Fatalf("fn's error wrote: revision %d, want %d", rev, rev0)
	}
	v, changed, err = s.Update(ctx, 1, func(r *rec) error { r.N = 2; return nil })
	if err != nil || !changed || v.N != 2 {
		t.Fatalf("update: %+v changed %v err %v", v, changed, err)
	}
	if got, rev, _ := s.Get(ctx, 1); got.N != 2 || rev <= rev0 {
		t.Fatalf("read back %+v at %d, want N 2 after %d", got, rev, rev0)
	}
}

func TestNotFoundAndExists(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	if _, _, err := s.Get(ctx, 3); !errors.Is(err, kvstore.ErrNotFound) || err.Error() != "thing 3 does not exist: not found" {
		t.Errorf("Get of nothing: %v", err)
	}
	if _, _, err := s.Update(ctx, 3, func(*rec) error { t.Error("fn called"); return nil }); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("Update of nothing: %v", err)
	}
	if _, err := s.Create(ctx, 3, &rec{ID: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, 3, &rec{ID: 3}); !errors.Is(err, kvstore.ErrExists) {
		t.Errorf("second Create: %v", err)
	}
	if err := s.Purge(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, 3); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("Get after Purge: %v", err)
	}
	if _, err := s.Create(ctx, 3, &rec{ID: 3, N: 1}); err != nil {
		t.Errorf("Create after Purge: %v", err)
	}
	if err := s.Delete(ctx, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Get(ctx, 3); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if _, err := s.LookupName(ctx, kvstore.Name{"nobody"}); !errors.Is(err, kvstore.ErrNotFound) {
		t.Errorf("LookupName of nothing: %v", err)
	}
}

func TestListOrder(t *testing.T) {
	ctx := testCtx(t)
	s, kv := newStore(t)
	for _, id := range []int64{10, 2, 33, 1, 9} {
		if _, err := s.Put(ctx, id, &rec{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// The counter and the name index share the bucket; they are no records.
	if _, err := s.NextID(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ClaimName(ctx, kvstore.Name{"x"}, 2, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "stray", []byte("{}")); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, 9); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Update(ctx, 33, func(r *rec) error { r.N = 1; return nil }); err != nil {
		t.Fatal(err)
	}
	all, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, r := range all {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []int64{1, 2, 10, 33}) || all[3].N != 1 {
		t.Errorf("List = %+v, want IDs 1 2 10 33 (numeric order, deleted 9 left out, 33 as updated)", all)
	}

	empty, _ := newStore(t)
	if got, err := empty.List(ctx); err != nil || got == nil || len(got) != 0 {
		t.Errorf("List of an empty bucket = %#v, %v; want an empty slice", got, err)
	}
}

// A string-keyed store with a prefix shares its bucket; ListUnder picks one
// group of keys, and Config.ID orders by the records' own IDs.
func TestStringKeysPrefixAndOrder(t *testing.T) {
	ctx := testCtx(t)
	kv := buckets(t, 1)[0]
	apps := kvstore.New[string](kv, kvstore.Config[rec]{What: "app", Prefix: "app.", Counter: "meta.next-app-id",
		ID: func(r *rec) int64 { return r.ID }})
	other := kvstore.New[int64](kv, kvstore.Config[rec]{What: "market", Prefix: "market."})
	for _, a := range []struct {
		key string
		id  int64
	}{{"1.zz", 5}, {"1.aa", 7}, {"2.mm", 1}, {"10.bb", 3}} {
		if _, err := apps.Put(ctx, a.key, &rec{ID: a.id, Name: a.key}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := other.Put(ctx, 1, &rec{ID: 1}); err != nil {
		t.Fatal(err)
	}
	names := func(rs []rec) (out []string) {
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	all, err := apps.List(ctx)
	if err != nil || !slices.Equal(names(all), []string{"2.mm", "10.bb", "1.zz", "1.aa"}) {
		t.Errorf("apps: %v, %v; want them by ID", names(all), err)
	}
	one, err := apps.ListUnder(ctx, "1.")
	if err != nil || !slices.Equal(names(one), []string{"1.zz", "1.aa"}) {
		t.Errorf("apps under 1.: %v, %v", names(one), err)
	}
	if ms, err := other.List(ctx); err != nil || len(ms) != 1 {
		t.Errorf("markets: %+v, %v", ms, err)
	}
	if _, _, err := apps.Update(ctx, "1.aa", func(r *rec) error { r.N = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	if r, _, err := apps.Get(ctx, "1.aa"); err != nil || r.N != 4 {
		t.Errorf("Get(1.aa) = %+v, %v", r, err)
	}
	if e, err := kv.Get(ctx, "app.1.aa"); err != nil || e.Revision() == 0 {
		t.Errorf("the record is not under its prefixed key: %v", err)
	}
	if first, err := apps.NextIDs(ctx, 3); err != nil || first != 0 {
		t.Errorf("NextIDs(3) = %d, %v", first, err)
	}
	if e, err := kv.Get(ctx, "meta.next-app-id"); err != nil || string(e.Value()) != "3" {
		t.Errorf("counter: %v", err)
	}

	plain := kvstore.New[string](buckets(t, 1)[0], kvstore.Config[rec]{What: "secret"})
	for _, k := range []string{"c", "a", "b"} {
		if _, err := plain.Create(ctx, k, &rec{Name: k}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := plain.List(ctx); err != nil || !slices.Equal(names(got), []string{"a", "b", "c"}) {
		t.Errorf("string keys: %v, %v; want key order", names(got), err)
	}
}

func TestNameIndex(t *testing.T) {
	ctx := testCtx(t)
	kvs := buckets(t, 2)
	// Counter and names in a bucket of their own, names per owner.
	s := kvstore.New[int64](kvs[0], kvstore.Config[rec]{What: "image", Meta: kvs[1]})
	alive := map[int64]bool{}
	isAlive := func(h int64) (bool, error) { return alive[h], nil }

	if h, err := s.ClaimName(ctx, kvstore.Name{"ann", "db"}, 1, isAlive); err != nil || h != 1 {
		t.Fatalf("first claim: holder %d, %v", h, err)
	}
	alive[1] = true
	if h, err := s.ClaimName(ctx, kvstore.Name{"ann", "db"}, 1, isAlive); err != nil || h != 1 {
		t.Fatalf("the holder's claim again: holder %d, %v", h, err)
	}
	if h, err := s.ClaimName(ctx, kvstore.Name{"ann", "db"}, 2, isAlive); err != nil || h != 1 {
		t.Fatalf("claim of a live holder's name: holder %d, %v; want 1", h, err)
	}
	if h, err := s.ClaimName(ctx, kvstore.Name{"bob", "db"}, 2, isAlive); err != nil || h != 2 {
		t.Fatalf("another owner's same name: holder %d, %v", h, err)
	}
	if id, err := s.LookupName(ctx, kvstore.Name{"ann", "db"}); err != nil || id != 1 {
		t.Fatalf("lookup: %d, %v", id, err)
	}
	// Holder 1 died without releasing: 3 takes the name over.
	alive[1] = false
	if h, err := s.ClaimName(ctx, kvstore.Name{"ann", "db"}, 3, isAlive); err != nil || h != 3 {
		t.Fatalf("takeover: holder %d, %v", h, err)
	}
	// Only the holder releases.
	if err := s.ReleaseName(ctx, kvstore.Name{"ann", "db"}, 1); err != nil {
		t.Fatal(err)
	}
	if id, err := s.LookupName(ctx, kvstore.Name{"ann", "db"}); err != nil || id != 3 {
		t.Fatalf("a non-holder released the name: %d, %v", id, err)
	}
	if err := s.ReleaseName(ctx, kvstore.Name{"ann", "db"}, 3); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupName(ctx, kvstore.Name{"ann", "db"}); !errors.Is(err, kvstore.ErrNotFound) {
		t.Fatalf("lookup after release: %v", err)
	}
	if err := s.ReleaseName(ctx, kvstore.Name{"ann", "db"}, 3); err != nil {
		t.Errorf("release of a free name: %v", err)
	}
	aliveErr := errors.New("cannot tell")
	alive[2] = true
	if _, err := s.ClaimName(ctx, kvstore.Name{"bob", "db"}, 4, func(int64) (bool, error) { return false, aliveErr }); !errors.Is(err, aliveErr) {
		t.Errorf("alive's error: %v", err)
	}
	// Names with characters KV keys cannot hold.
	if h, err := s.ClaimName(ctx, kvstore.Name{"a user", "ubuntu 24.04 / *"}, 5, isAlive); err != nil || h != 5 {
		t.Errorf("odd name: %d, %v", h, err)
	}
	// Nothing of the index is in the records' bucket.
	if got, err := s.List(ctx); err != nil || len(got) != 0 {
		t.Errorf("records: %+v, %v", got, err)
	}

	// Racing claims of a free name: exactly one wins.
	var wg sync.WaitGroup
	winners := make(chan int64, 8)
	for id := int64(10); id < 18; id++ {
		wg.Go(func() {
			h, err := s.ClaimName(ctx, kvstore.Name{"race"}, id, nil)
			if err != nil {
				t.Error(err)
			}
			if h == id {
				winners <- id
			}
		})
	}
	wg.Wait()
	close(winners)
	var won []int64
	for id := range winners {
		won = append(won, id)
	}
	if len(won) != 1 {
		t.Errorf("winners of a race for a name: %v", won)
	}
}
