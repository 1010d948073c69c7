package saga_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/pkg/testenv"
)

// newStore starts an in-process nats-server with JetStream and returns a
// Store on a fresh KV bucket there, and a context for the test.
func newStore(t *testing.T) (*saga.Store, context.Context) {
	t.Helper()
	url, _ := testenv.NATS(t)
	kv, err := testenv.JetStream(t, url).CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: "sagas", History: 1})
	if err != nil {
		t.Fatal(err)
	}
	return saga.NewStore(kv), ctxT(t)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// recorder is a workflow definition whose compensations log their calls.
type recorder struct {
	mu    sync.Mutex
	calls []saga.Phase
	fail  map[saga.Phase]int // phase -> how many more times to fail
}

func (r *recorder) comp(p saga.Phase) func(context.Context, *saga.Saga) error {
	return func(_ context.Context, s *saga.Saga) error {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.calls = append(r.calls, p)
		if r.fail[p] > 0 {
			r.fail[p]--
			return fmt.Errorf("delete %v: s3 unavailable", s.Owned)
		}
		return nil
	}
}

func (r *recorder) Calls() []saga.Phase {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) def() saga.Definition {
	return saga.Definition{Kind: "import", Phases: map[saga.Phase]saga.PhaseSpec{
		"fetch":   {Deadline: time.Minute, Compensate: r.comp("fetch")},
		"convert": {Deadline: time.Minute, Compensate: r.comp("convert")},
		"commit":  {Deadline: time.Minute, Compensate: r.comp("commit")},
	}}
}

func start(t *testing.T, st *saga.Store, id string) *saga.Saga {
	t.Helper()
	s := &saga.Saga{ID: id, Kind: "import", Subject: "7", Phase: "fetch"}
	if err := s.SetData(map[string]string{"name": "alpine"}); err != nil {
		t.Fatal(err)
	}
	if err := st.Create(ctxT(t), s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCreateGetExists(t *testing.T) {
	st, ctx := newStore(t)
	s := start(t, st, "s1")
	if s.Revision == 0 || s.Status != saga.StatusRunning || len(s.History) != 1 {
		t.Fatalf("created saga: %+v", s)
	}
	err := st.Create(ctx, &saga.Saga{ID: "s1", Kind: "import", Phase: "fetch"})
	if !errors.Is(err, saga.ErrExists) {
		t.Fatalf("duplicate create: got %v, want ErrExists", err)
	}
	got, err := st.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]string
	if err := got.Decode(&data); err != nil || data["name"] != "alpine" {
		t.Fatalf("data = %v, %v", data, err)
	}
	if got.Subject != "7" || got.Phase != "fetch" || got.Revision != s.Revision {
		t.Fatalf("got %+v", got)
	}
	if _, err := st.Get(ctx, "nope"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("get missing: %v", err)
	}
	if err := st.Delete(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Get(ctx, "s1"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("get deleted: %v", err)
	}
	// A deleted ID can be started again.
	start(t, st, "s1")
}

func TestConcurrentAdvanceExactlyOneWins(t *testing.T) {
	st, ctx := newStore(t)
	start(t, st, "s1")
	const n = 8
	var wins, wrong atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			_, err := st.Advance(ctx, "s1", "fetch", "convert", time.Minute, fmt.Sprintf("worker %d", i))
			var pe *saga.PhaseError
			switch {
			case err == nil:
				wins.Add(1)
			case errors.Is(err, saga.ErrWrongPhase) && errors.As(err, &pe) && pe.Actual == "convert":
				wrong.Add(1)
			default:
				t.Errorf("advance: %v", err)
			}
		})
	}
	wg.Wait()
	if wins.Load() != 1 || wrong.Load() != n-1 {
		t.Fatalf("wins=%d wrong-phase=%d, want 1 and %d", wins.Load(), wrong.Load(), n-1)
	}
	s, err := st.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != "convert" || len(s.History) != 2 || s.Deadline.IsZero() {
		t.Fatalf("after advance: phase %q history %v deadline %v", s.Phase, s.History, s.Deadline)
	}
}

func TestUpdateRetriesOnConflict(t *testing.T) {
	st, ctx := newStore(t)
	start(t, st, "s1")
	calls := 0
	s, err := st.Update(ctx, "s1", func(s *saga.Saga) error {
		calls++
		if calls == 1 {
			// Another writer sneaks in between our read and our write.
			if err := st.Own(ctx, "s1", "s3://b/other"); err != nil {
				return err
			}
		}
		s.Attempts++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls != 2 {
		t.Fatalf("fn called %d times, want 2 (one conflict, one retry)", calls)
	}
	if s.Attempts != 1 || !slices.Equal(s.Owned, []string{"s3://b/other"}) {
		t.Fatalf("lost an update: attempts %d owned %v", s.Attempts, s.Owned)
	}

	// Many concurrent writers: no increment is lost.
	var wg sync.WaitGroup
	for range 6 {
		wg.Go(func() {
			for range 5 {
				if _, err := st.Update(ctx, "s1", func(s *saga.Saga) error { s.Attempts++; return nil }); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	got, err := st.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Attempts != 31 {
		t.Fatalf("attempts = %d, want 31", got.Attempts)
	}

	// ErrNoChange writes nothing.
	same, err := st.Update(ctx, "s1", func(*saga.Saga) error { return saga.ErrNoChange })
	if err != nil || same.Revision != got.Revision {
		t.Fatalf("no-change update: rev %d -> %d, err %v", got.Revision, same.Revision, err)
	}
	// Other errors come back as they are.
	boom := errors.New("boom")
	if _, err := st.Update(ctx, "s1", func(*saga.Saga) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("fn error: %v", err)
	}
}

func TestOwnSucceedFail(t *testing.T) {
	st, ctx := newStore(t)
	start(t, st, "ok")
	for range 2 {
		if err := st.Own(ctx, "ok", "s3://slipway-default/images/7/disk.qcow2"); err != nil {
			t.Fatal(err)
		}
	}
	s, err := st.Succeed(ctx, "ok", "READY")
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Owned) != 1 || s.Status != saga.StatusSucceeded {
		t.Fatalf("owned %v status %s", s.Owned, s.Status)
	}
	if _, err := st.Succeed(ctx, "ok", "again"); err != nil {
		t.Fatalf("second succeed: %v", err)
	}
	if _, err := st.Fail(ctx, "ok", "late"); !errors.Is(err, saga.ErrNotRunning) {
		t.Fatalf("fail after success: %v", err)
	}

	start(t, st, "bad")
	if _, err := st.Fail(ctx, "bad", "checksum mismatch"); err != nil {
		t.Fatal(err)
	}
	s, err = st.Fail(ctx, "bad", "second reason")
	if err != nil || s.Error != "checksum mismatch" || s.Status != saga.StatusCompensating {
		t.Fatalf("second fail: %+v %v", s, err)
	}
	_, err = st.Advance(ctx, "bad", "fetch", "convert", 0, "")
	if !errors.Is(err, saga.ErrWrongPhase) || !errors.Is(err, saga.ErrNotRunning) {
		t.Fatalf("advance a failing saga: %v", err)
	}
	if _, err := st.Succeed(ctx, "bad", ""); !errors.Is(err, saga.ErrNotRunning) {
		t.Fatalf("succeed a failing saga: %v", err)
	}
	all, err := st.List(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("list: %d sagas, %v", len(all), err)
	}
}

func TestDeadlineExpiryCompensatesOnceInReverse(t *testing.T) {
	st, ctx := newStore(t)
	rec := &recorder{}
	eng := saga.NewEngine(st, rec.def())
	start(t, st, "s1")
	start(t, st, "fresh") // no deadline passed: left alone
	if _, err := st.Advance(ctx, "s1", "fetch", "convert", 50*time.Millisecond, "converter asked"); err != nil {
		t.Fatal(err)
	}
	if err := st.Own(ctx, "s1", "s3://slipway-default/images/7/disk.qcow2"); err != nil {
		t.Fatal(err)
	}
	var expired []string
	eng.Hooks.Expired = func(ctx context.Context, s *saga.Saga) error {
		expired = append(expired, s.ID)
		_, err := st.Expire(ctx, s.ID)
		return err
	}
	if err := eng.Reconcile(ctx); err != nil { // before the deadline
		t.Fatal(err)
	}
	if len(expired) != 0 || len(rec.Calls()) != 0 {
		t.Fatalf("acted before the deadline: expired %v calls %v", expired, rec.Calls())
	}
	time.Sleep(80 * time.Millisecond)
	for range 3 {
		if err := eng.Reconcile(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(expired, []string{"s1"}) {
		t.Fatalf("expired hook calls: %v", expired)
	}
	if got, want := rec.Calls(), []saga.Phase{"convert", "fetch"}; !slices.Equal(got, want) {
		t.Fatalf("compensations %v, want %v", got, want)
	}
	s, err := st.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != saga.StatusFailed || s.Error != `phase "convert" did not finish within 50ms` {
		t.Fatalf("status %s error %q", s.Status, s.Error)
	}
	if s.LeaseOwner != "" {
		t.Fatalf("lease not released: %q", s.LeaseOwner)
	}
	fresh, err := st.Get(ctx, "fresh")
	if err != nil || fresh.Status != saga.StatusRunning {
		t.Fatalf("fresh saga: %+v %v", fresh, err)
	}
}

func TestDefaultExpiryWithoutHook(t *testing.T) {
	st, ctx := newStore(t)
	rec := &recorder{}
	eng := saga.NewEngine(st, rec.def())
	start(t, st, "s1")
	if _, err := st.Advance(ctx, "s1", "fetch", "convert", time.Second, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)
	if err := eng.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := st.Get(ctx, "s1")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != saga.StatusFailed || s.Error != `phase "convert" did not finish within 1s` {
		t.Fatalf("status %s error %q", s.Status, s.Error)
	}
	if got := rec.Calls(); !slices.Equal(got, []saga.Phase{"convert", "fetch"}) {
		t.Fatalf("compensations %v", got)
	}
}

func TestCompensationFailureRetriedNextPass(t *testing.T) {
	st, ctx := newStore(t)
	rec := &recorder{fail: map[saga.Phase]int{"fetch": 1}}
	eng := saga.NewEngine(st, rec.def())
	start(t, st, "s1")
	if _, err := st.Advance(ctx, "s1", "fetch", "convert", time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Advance(ctx, "s1", "convert", "commit", time.Minute, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Fail(ctx, "s1", "commit: sha256 mismatch"); err != nil {
		t.Fatal(err)
	}
	err := eng.Compensate(ctx, "s1")
	if err == nil {
		t.Fatal("compensate: want the fetch error")
	}
	s, _ := st.Get(ctx, "s1")
	if s.Status != saga.StatusCompensating || s.LeaseOwner != "" {
		t.Fatalf("after failed compensation: status %s lease %q", s.Status, s.LeaseOwner)
	}
	if err := eng.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := rec.Calls(), []saga.Phase{"commit", "convert", "fetch", "fetch"}; !slices.Equal(got, want) {
		t.Fatalf("compensations %v, want %v", got, want)
	}
	s, _ = st.Get(ctx, "s1")
	if s.Status != saga.StatusFailed || s.Error != "commit: sha256 mismatch" {
		t.Fatalf("final: status %s error %q", s.Status, s.Error)
	}
	// Idempotent once finished.
	if err := eng.Compensate(ctx, "s1"); err != nil {
		t.Fatal(err)
	}
	if len(rec.Calls()) != 4 {
		t.Fatalf("compensated again: %v", rec.Calls())
	}
}

// hanging is a definition whose fetch compensation, on its first run,
// closes entered and hangs until release is closed; runs counts its runs.
type hanging struct {
	def              saga.Definition
	entered, release chan struct{}
	runs             atomic.Int32
}

func newHanging() *hanging {
	h := &hanging{entered: make(chan struct{}), release: make(chan struct{})}
	h.def = saga.Definition{Kind: "import", Phases: map[saga.Phase]saga.PhaseSpec{
		"fetch": {Compensate: func(context.Context, *saga.Saga) error {
			if h.runs.Add(1) == 1 {
				close(h.entered)
				<-h.release
			}
			return nil
		}},
	}}
	return h
}

func TestCompensationLeaseKeepsReplicasApart(t *testing.T) {
	st, ctx := newStore(t)
	h := newHanging()
	a, b := saga.NewEngine(st, h.def), saga.NewEngine(st, h.def)
	start(t, st, "s1")
	if _, err := st.Fail(ctx, "s1", "fetch: 404"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Compensate(ctx, "s1") }()
	<-h.entered
	if err := a.Compensate(ctx, "s1"); !errors.Is(err, saga.ErrBusy) {
		t.Fatalf("second call in the same engine: %v, want ErrBusy", err)
	}
	if err := a.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile skips a leased saga: %v", err)
	}
	if err := b.Compensate(ctx, "s1"); !errors.Is(err, saga.ErrBusy) {
		t.Fatalf("second replica: %v, want ErrBusy", err)
	}
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("reconcile skips a leased saga: %v", err)
	}
	close(h.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if h.runs.Load() != 1 {
		t.Fatalf("compensation ran %d times", h.runs.Load())
	}
	s, _ := st.Get(ctx, "s1")
	if s.Status != saga.StatusFailed {
		t.Fatalf("status %s", s.Status)
	}
}

func TestRetentionAndResume(t *testing.T) {
	st, ctx := newStore(t)
	eng := saga.NewEngine(st, (&recorder{}).def())
	eng.Retention = 50 * time.Millisecond
	start(t, st, "done")
	if _, err := st.Succeed(ctx, "done", ""); err != nil {
		t.Fatal(err)
	}
	start(t, st, "busy")
	if _, err := st.Advance(ctx, "busy", "fetch", "commit", time.Hour, ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(80 * time.Millisecond)

	var resumed atomic.Int32
	runCtx, cancel := context.WithCancel(ctx)
	ret := make(chan error, 1)
	go func() {
		ret <- eng.RunReconciler(runCtx, 20*time.Millisecond, saga.Hooks{Resume: func(_ context.Context, s *saga.Saga) error {
			if s.ID != "busy" || s.Phase != "commit" {
				t.Errorf("resumed %s in %s", s.ID, s.Phase)
			}
			resumed.Add(1)
			return nil
		}})
	}()
	time.Sleep(150 * time.Millisecond) // several passes
	cancel()
	if err := <-ret; err != nil {
		t.Fatalf("RunReconciler: %v", err)
	}
	if resumed.Load() != 1 {
		t.Fatalf("resume called %d times, want once", resumed.Load())
	}
	if _, err := st.Get(ctx, "done"); !errors.Is(err, saga.ErrNotFound) {
		t.Fatalf("finished saga past retention: %v", err)
	}
	if _, err := st.Get(ctx, "busy"); err != nil {
		t.Fatalf("running saga deleted: %v", err)
	}
}

func TestExpiredLeaseIsTakenOver(t *testing.T) {
	st, ctx := newStore(t)
	h := newHanging()
	a, b := saga.NewEngine(st, h.def), saga.NewEngine(st, h.def)
	a.Lease = 50 * time.Millisecond
	start(t, st, "s1")
	done := make(chan error, 1)
	go func() { done <- a.Compensate(ctx, "s1") }()
	<-h.entered // a replica that hangs past its lease
	time.Sleep(80 * time.Millisecond)
	if err := b.Reconcile(ctx); err != nil {
		t.Fatalf("takeover: %v", err)
	}
	close(h.release)
	if err := <-done; !errors.Is(err, saga.ErrBusy) {
		t.Fatalf("hung compensation finished with %v, want ErrBusy (lease lost)", err)
	}
	s, _ := st.Get(ctx, "s1")
	if s.Status != saga.StatusFailed || h.runs.Load() != 2 {
		t.Fatalf("status %s after %d runs", s.Status, h.runs.Load())
	}
}
