package bus

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/slipway/slipway/pkg/envelope"
)

type createCmd struct {
	Name string `json:"name"`
}

// TestAwaitStreamsWaitsForTheSetup: a service that may not create the
// streams waits for them, and says which it lacks when it gives up.
func TestAwaitStreamsWaitsForTheSetup(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	connect := func(service string) *Bus {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(nc, Config{Service: service, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	launcher := connect("launcher")
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	if err := launcher.AwaitStreams(short); err == nil || !strings.Contains(err.Error(), launcher.CommandStream()) {
		t.Fatalf("AwaitStreams with no streams: %v, want an error naming %s", err, launcher.CommandStream())
	}
	done := make(chan error, 1)
	go func() { done <- launcher.AwaitStreams(ctx) }()
	time.Sleep(200 * time.Millisecond)
	select {
	case err := <-done:
		t.Fatalf("AwaitStreams returned before the setup: %v", err)
	default:
	}
	if err := connect("catalog").Setup(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("AwaitStreams after the setup: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("AwaitStreams did not see the streams set up")
	}
}

// TestSetupUpdatesAChangedStream: Setup leaves a stream that is as wanted
// alone, but one whose settings differ from its own is updated.
func TestSetupUpdatesAChangedStream(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	for _, age := range []time.Duration{time.Hour, 2 * time.Hour} {
		nc, err := nats.Connect(srv.ClientURL())
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(nc, Config{Service: "catalog", EventMaxAge: age, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Setup(ctx); err != nil {
			t.Fatal(err)
		}
		s, err := b.JetStream().Stream(ctx, b.EventStream())
		if err != nil {
			t.Fatal(err)
		}
		if got := s.CachedInfo().Config.MaxAge; got != age {
			t.Errorf("event max age %s after a Setup asking %s", got, age)
		}
		b.Close()
	}
}

func TestSetupIdempotentAndNames(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(nc, Config{Prefix: "it-1.x", Service: "catalog", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for range 2 {
		if err := b.Setup(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if b.CommandStream() != "IT_1_X_CMD" || b.EventStream() != "IT_1_X_EVT" || b.DeadLetterStream() != "IT_1_X_DLQ" {
		t.Fatalf("stream names %s %s %s", b.CommandStream(), b.EventStream(), b.DeadLetterStream())
	}
	s, err := b.JetStream().Stream(ctx, "IT_1_X_CMD")
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Retention != jetstream.WorkQueuePolicy || cfg.Duplicates != 2*time.Minute || cfg.Subjects[0] != "it-1.x.cmd.>" {
		t.Fatalf("command stream config %+v", cfg)
	}
	s, err = b.JetStream().Stream(ctx, "IT_1_X_EVT")
	if err != nil {
		t.Fatal(err)
	}
	if s.CachedInfo().Config.MaxAge != DefaultEventMaxAge {
		t.Fatalf("event max age %s", s.CachedInfo().Config.MaxAge)
	}
	if got := b.CommandSubject("catalog", "image-create"); got != "it-1.x.cmd.catalog.image-create."+b.Sender() {
		t.Fatal(got)
	}
	if got := b.EventSubject("converter", "converted", "7"); got != "it-1.x.evt.converter.converted.7" {
		t.Fatal(got)
	}
	if _, err := New(nc, Config{Service: "a.b"}); err == nil {
		t.Fatal("service with a dot accepted")
	}
	kv, err := b.KeyValue(ctx, "slipway_catalog_dedup", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.History() != 5 || st.TTL() != time.Hour {
		t.Fatalf("kv status %+v %v", st, err)
	}
}

func TestPublishDedupByStepID(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	var ids []string
	for range 2 {
		env, err := b.Command(ctx, "converter", "import", createCmd{Name: "x"}, WithStep("saga-1", "import"))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, env.ID)
	}
	if ids[0] != ids[1] || ids[0] != envelope.StepID("saga-1", "import") {
		t.Fatalf("step IDs %v", ids)
	}
	if n := streamMsgs(t, b, b.CommandStream()); n != 1 {
		t.Fatalf("command stream holds %d messages, want 1 (duplicate dropped)", n)
	}
	// A different step is a different message.
	if _, err := b.Command(ctx, "converter", "import", createCmd{Name: "x"}, WithStep("saga-1", "import-2")); err != nil {
		t.Fatal(err)
	}
	if n := streamMsgs(t, b, b.CommandStream()); n != 2 {
		t.Fatalf("command stream holds %d messages, want 2", n)
	}
}

func TestEnvelopeAndTraceRoundTrip(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	prev := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() { otel.SetTracerProvider(prev) })

	srv := startServer(t)
	cli := newBus(t, srv, "cli")
	catalog := newBus(t, srv, "catalog")
	ctx := testCtx(t)

	got := newRecorder()
	consume(t, catalog, func(ctx context.Context, m *Msg) error {
		got.add(m)
		var c createCmd
		if err := m.Decode(&c); err != nil {
			return Terminal(err)
		}
		// The handler's ctx continues the producer's trace.
		_, err := catalog.Event(ctx, "image-created", "7", map[string]string{"name": c.Name}, CausedBy(m.Envelope))
		return err
	})

	events := newRecorder()
	stopEv, err := cli.ConsumeEvents(ctx, "cli-watch", []string{cli.EventSubject("catalog", "*", "*"), cli.EventSubject("converter", "*", "*")},
		func(_ context.Context, m *Msg) error { events.add(m); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer stopEv.Stop()

	rootCtx, root := tp.Tracer("test").Start(ctx, "root")
	sent, err := cli.Command(rootCtx, "catalog", "image-create", createCmd{Name: "alpine"}, WithSubject("img"))
	root.End()
	if err != nil {
		t.Fatal(err)
	}
	m := got.wait(t, 10*time.Second)
	e := m.Envelope
	if e.ID != sent.ID || e.CorrelationID != sent.ID || e.Source != "/slipway/cli" || e.Subject != "img" ||
		e.Type != "io.slipway.catalog.image-create.v1" ||
		e.DataSchema != "https://slipway.dev/schemas/cmd/catalog.image-create.json" ||
		e.DataContentType != "application/json" || !e.Time.Equal(sent.Time) || e.TraceParent != sent.TraceParent {
		t.Fatalf("received envelope\n %+v\nsent\n %+v", e, sent)
	}
	if m.Service != "catalog" || m.Name != "image-create" || m.ID != "" || m.Delivered != 1 || m.Header.Get(nats.MsgIdHdr) != sent.ID {
		t.Fatalf("msg fields %+v", m)
	}
	traceID := root.SpanContext().TraceID()
	if !strings.Contains(sent.TraceParent, traceID.String()) {
		t.Fatalf("traceparent %q does not carry trace %s", sent.TraceParent, traceID)
	}

	ev := events.wait(t, 10*time.Second)
	if ev.Service != "catalog" || ev.Name != "image-created" || ev.ID != "7" || ev.Envelope.Subject != "7" ||
		ev.Envelope.CausationID != sent.ID || ev.Envelope.CorrelationID != sent.ID ||
		ev.Envelope.Type != "io.slipway.catalog.image-created.v1" || ev.Envelope.Source != "/slipway/catalog" {
		t.Fatalf("event %+v envelope %+v", ev, ev.Envelope)
	}
	if !strings.Contains(ev.Envelope.TraceParent, traceID.String()) {
		t.Fatalf("event traceparent %q lost trace %s", ev.Envelope.TraceParent, traceID)
	}

	// The catalog's consumer span is in the same trace and names the service.
	deadline := time.Now().Add(5 * time.Second)
	for {
		var found bool
		for _, s := range rec.Ended() {
			if s.SpanKind() == trace.SpanKindConsumer && s.SpanContext().TraceID() == traceID {
				for _, a := range s.Attributes() {
					if a.Key == "slipway.service" && a.Value.AsString() == "catalog" {
						found = true
					}
				}
			}
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no consumer span with slipway.service=catalog in the producer's trace")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPlainPublishWithoutEnvelope(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	got := recording(t, b)
	// What `nats pub slipway.cmd.catalog.image-delete '{"id":1}'` does.
	if err := b.Conn().Publish("slipway.cmd.catalog.image-delete", []byte(`{"id":1}`)); err != nil {
		t.Fatal(err)
	}
	m := got.wait(t, 10*time.Second)
	e := m.Envelope
	if e.ID == "" || e.CorrelationID != e.ID || e.Type != "io.slipway.catalog.image-delete.v1" || e.Time.IsZero() {
		t.Fatalf("synthesized envelope %+v", e)
	}
	var v struct {
		ID int `json:"id"`
	}
	if err := m.Decode(&v); err != nil || v.ID != 1 {
		t.Fatalf("decode: %v %+v", err, v)
	}
}

func TestBadEnvelopeIsTerminated(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	got := recording(t, b, AckWait(time.Second))
	msg := nats.NewMsg("slipway.cmd.catalog.image-delete")
	msg.Header.Set(envelope.HeaderID, "x") // no ce-type, ce-source, ce-specversion
	if _, err := b.JetStream().PublishMsg(ctx, msg); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Command(ctx, "catalog", "image-enable", json.RawMessage(`{"id":2}`)); err != nil {
		t.Fatal(err)
	}
	m := got.wait(t, 10*time.Second)
	if m.Name != "image-enable" {
		t.Fatalf("handler saw %s; the bad envelope should not reach it", m.Subject)
	}
	time.Sleep(1500 * time.Millisecond)
	if got.count() != 1 {
		t.Fatalf("handler ran %d times", got.count())
	}
}

func TestDecodeStrict(t *testing.T) {
	m := &Msg{Subject: "s", Data: []byte(`{"name":"a","nmae":"b"}`)}
	var c createCmd
	if err := m.Decode(&c); err == nil || !strings.Contains(err.Error(), "nmae") {
		t.Fatalf("unknown field: err = %v", err)
	}
	m.Data = []byte(`{"name":"a"} {}`)
	if err := m.Decode(&c); err == nil {
		t.Fatal("trailing data accepted")
	}
	m.Data = nil
	if err := m.Decode(&c); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("empty: err = %v", err)
	}
}

// deliveries counts handler runs per message and fails as told.
func countingConsumer(t *testing.T, b *Bus, h func(n int32) error, opts ...ConsumeOption) (*atomic.Int32, *recorder) {
	t.Helper()
	var n atomic.Int32
	rec := newRecorder()
	consume(t, b, func(_ context.Context, m *Msg) error {
		rec.add(m)
		return h(n.Add(1))
	}, opts...)
	return &n, rec
}

func TestTerminalIsNotRedelivered(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	n, rec := countingConsumer(t, b, func(int32) error { return Terminal(errors.New("bad image name")) },
		AckWait(time.Second), Backoff(func(uint64) time.Duration { return 50 * time.Millisecond }))
	if _, err := b.Command(testCtx(t), "catalog", "image-create", createCmd{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 10*time.Second)
	time.Sleep(1500 * time.Millisecond) // past AckWait and the backoff
	if got := n.Load(); got != 1 {
		t.Fatalf("terminal message delivered %d times", got)
	}
	if !IsTerminal(Terminal(errors.New("x"))) || IsTerminal(errors.New("x")) || Terminal(nil) != nil {
		t.Fatal("Terminal/IsTerminal")
	}
	if !IsTerminal(errors.Join(errors.New("ctx"), Terminal(errors.New("x")))) {
		t.Fatal("wrapped terminal not recognised")
	}
}

func TestRetryableIsRedeliveredAfterBackoff(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	const delay = 400 * time.Millisecond
	var (
		mu        sync.Mutex
		delivered []uint64
	)
	_, rec := countingConsumer(t, b, func(n int32) error {
		if n == 1 {
			return errors.New("minio unavailable")
		}
		return nil
	}, AckWait(2*time.Second), Backoff(func(d uint64) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		delivered = append(delivered, d)
		return delay
	}))
	if _, err := b.Command(testCtx(t), "catalog", "image-create", createCmd{}); err != nil {
		t.Fatal(err)
	}
	first := rec.wait(t, 10*time.Second)
	second := rec.wait(t, 10*time.Second)
	if second.Delivered != 2 || first.Envelope.ID != second.Envelope.ID {
		t.Fatalf("second delivery %+v", second)
	}
	rec.mu.Lock()
	gap := rec.at[1].Sub(rec.at[0])
	rec.mu.Unlock()
	if gap < delay || gap > 2*time.Second-100*time.Millisecond {
		t.Fatalf("redelivered after %s, want the %s backoff (not AckWait)", gap, delay)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(delivered) != 1 || delivered[0] != 1 {
		t.Fatalf("backoff called with %v", delivered)
	}
	time.Sleep(500 * time.Millisecond)
	if rec.count() != 2 {
		t.Fatalf("acked message delivered %d times", rec.count())
	}
}

func TestDefaultBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := DefaultBackoff(uint64(i + 1)); got != w {
			t.Errorf("DefaultBackoff(%d) = %s, want %s", i+1, got, w)
		}
	}
	if DefaultBackoff(1000) != time.Minute {
		t.Error("no cap")
	}
}

func TestHeartbeatKeepsLongWorkAlive(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	n, rec := countingConsumer(t, b, func(int32) error {
		time.Sleep(2500 * time.Millisecond) // 2.5 × AckWait
		return nil
	}, AckWait(time.Second), Concurrency(2))
	if _, err := b.Command(testCtx(t), "catalog", "image-create", createCmd{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 10*time.Second)
	time.Sleep(4 * time.Second)
	if got := n.Load(); got != 1 {
		t.Fatalf("long handler's message delivered %d times; heartbeat did not hold it", got)
	}
}

func TestJobDeadlineEndsWorkThatHeartbeats(t *testing.T) {
	srv := startServer(t)
	const limit = 1500 * time.Millisecond
	var (
		mu      sync.Mutex
		expired []error
	)
	ctx := testCtx(t)
	b := newBus(t, srv, "builder")
	deliveries := make(chan time.Duration, 10)
	consume(t, b, func(hctx context.Context, m *Msg) error {
		start := time.Now()
		<-hctx.Done() // works past AckWait, sending heartbeats, until the deadline
		mu.Lock()
		expired = append(expired, JobExpired(hctx))
		mu.Unlock()
		deliveries <- time.Since(start)
		return hctx.Err() // what a job's tools return: retryable on its face
	}, AckWait(300*time.Millisecond), JobDeadline(limit), Backoff(func(uint64) time.Duration { return 50 * time.Millisecond }))
	if _, err := b.Command(ctx, "builder", "build", createCmd{}); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-deliveries:
		if d < limit || d > limit+time.Second {
			t.Fatalf("handler's context ended after %s, want the deadline %s", d, limit)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the job deadline never ended the handler")
	}
	select {
	case <-deliveries:
		t.Fatal("a job that ran out of time was delivered again")
	case <-time.After(2 * time.Second):
	}
	mu.Lock()
	defer mu.Unlock()
	var de *DeadlineError
	if len(expired) != 1 || !errors.As(expired[0], &de) || de.Limit != limit {
		t.Fatalf("JobExpired = %v, want a *DeadlineError of %s", expired, limit)
	}
	if !strings.Contains(de.Error(), "deadline of 1.5s") {
		t.Fatalf("DeadlineError says %q", de.Error())
	}
	if JobExpired(context.Background()) != nil {
		t.Fatal("JobExpired on a live context")
	}
	cctx, cancel := context.WithCancel(context.Background())
	cancel()
	if JobExpired(cctx) != nil {
		t.Fatal("JobExpired on a cancelled (not expired) context")
	}
}

func TestMaxDeliverGoesToDeadLetterStream(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	dlq, err := b.RunDeadLetter(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer dlq.Stop()
	n, _ := countingConsumer(t, b, func(int32) error { return errors.New("always failing") },
		AckWait(time.Second), MaxDeliver(3), Backoff(func(uint64) time.Duration { return 50 * time.Millisecond }))
	sent, err := b.Command(ctx, "catalog", "image-create", createCmd{Name: "dead"})
	if err != nil {
		t.Fatal(err)
	}
	cons, err := b.JetStream().OrderedConsumer(ctx, b.DeadLetterStream(), jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dead, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
	if err != nil {
		t.Fatalf("no dead letter: %v", err)
	}
	h := dead.Headers()
	if dead.Subject() != "slipway.dlq.SLIPWAY_CMD.catalog" || h.Get(HeaderDLQStream) != "SLIPWAY_CMD" ||
		h.Get(HeaderDLQConsumer) != "catalog" || h.Get(HeaderDLQDeliveries) != "3" || h.Get(HeaderDLQSeq) != "1" ||
		h.Get(nats.MsgIdHdr) != "dlq-SLIPWAY_CMD-1" || h.Get(envelope.HeaderID) != sent.ID ||
		h.Get(HeaderDLQSubject) != "slipway.cmd.catalog.image-create.catalog" || string(dead.Data()) != `{"name":"dead"}` {
		t.Fatalf("dead letter %s %v %s", dead.Subject(), h, dead.Data())
	}
	if got := n.Load(); got != 3 {
		t.Fatalf("delivered %d times, want MaxDeliver 3", got)
	}
	// The dead command leaves the work queue: it is deleted once its dead
	// letter is stored, so it may still be there when the letter arrives.
	waitEmpty(t, b, b.CommandStream(), 5*time.Second)
	// A repeated advisory (another instance, a retry) adds nothing.
	if err := b.deadLetter(ctx, maxDeliveriesAdvisory{Stream: "SLIPWAY_CMD", Consumer: "catalog", StreamSeq: 1, Deliveries: 3}); err != nil {
		t.Fatal(err)
	}
	if m := streamMsgs(t, b, b.DeadLetterStream()); m != 1 {
		t.Fatalf("dead-letter stream holds %d messages, want 1", m)
	}
}

func TestPanicIsRecoveredAsTerminal(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	n, rec := countingConsumer(t, b, func(n int32) error {
		if n == 1 {
			panic("nil map write")
		}
		return nil
	}, AckWait(time.Second), Backoff(func(uint64) time.Duration { return 50 * time.Millisecond }))
	ctx := testCtx(t)
	if _, err := b.Command(ctx, "catalog", "image-create", createCmd{}); err != nil {
		t.Fatal(err)
	}
	rec.wait(t, 10*time.Second)
	// The consumer survives: the next command is handled.
	if _, err := b.Command(ctx, "catalog", "image-delete", createCmd{}); err != nil {
		t.Fatal(err)
	}
	if m := rec.wait(t, 10*time.Second); m.Name != "image-delete" {
		t.Fatalf("after the panic the handler saw %s (the panicked message was redelivered)", m.Subject)
	}
	time.Sleep(1500 * time.Millisecond)
	if got := n.Load(); got != 2 {
		t.Fatalf("handler ran %d times, want 2", got)
	}
}

func TestStopWaitsForInFlightHandler(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	started := make(chan struct{})
	var finished atomic.Bool
	stop := consume(t, b, func(ctx context.Context, _ *Msg) error {
		close(started)
		time.Sleep(700 * time.Millisecond)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		finished.Store(true)
		return nil
	}, AckWait(2*time.Second))
	if _, err := b.Command(ctx, "catalog", "image-create", createCmd{}); err != nil {
		t.Fatal(err)
	}
	<-started
	t0 := time.Now()
	stop.Stop()
	if !finished.Load() {
		t.Fatal("Stop returned before the handler finished")
	}
	if time.Since(t0) > 3*time.Second {
		t.Fatalf("Stop took %s", time.Since(t0))
	}
	// It was acked: nothing left in the work queue.
	waitEmpty(t, b, b.CommandStream(), 2*time.Second)
}

func TestConcurrency(t *testing.T) {
	srv := startServer(t)
	b := newBus(t, srv, "catalog")
	ctx := testCtx(t)
	var running, peak atomic.Int32
	done := make(chan struct{}, 10)
	consume(t, b, func(context.Context, *Msg) error {
		r := running.Add(1)
		for {
			p := peak.Load()
			if r <= p || peak.CompareAndSwap(p, r) {
				break
			}
		}
		time.Sleep(300 * time.Millisecond)
		running.Add(-1)
		done <- struct{}{}
		return nil
	}, Concurrency(3))
	for range 6 {
		if _, err := b.Command(ctx, "catalog", "image-create", createCmd{}); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("handlers did not finish")
		}
	}
	if p := peak.Load(); p != 3 {
		t.Fatalf("peak concurrency %d, want 3", p)
	}
}

// TestCloseNowFlushesWhatWasPublished: CloseNow closes the connection
// without draining, but nothing the client published before is lost.
func TestCloseNowFlushesWhatWasPublished(t *testing.T) {
	srv := startServer(t)
	ctx := testCtx(t)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sub, err := nc.SubscribeSync("close-now.>")
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	b, err := Connect(ctx, Config{URL: srv.ClientURL(), Service: "cli", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	for i := range n {
		payload := make([]byte, 1024)
		payload[0] = byte(i)
		if err := b.Conn().Publish("close-now.msg", payload); err != nil {
			t.Fatal(err)
		}
	}
	b.CloseNow()
	if !b.Conn().IsClosed() {
		t.Fatal("the connection is still open after CloseNow")
	}
	for i := range n {
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("message %d of %d: %v", i+1, n, err)
		}
		if int(m.Data[0]) != i%256 {
			t.Fatalf("message %d carries %d", i, m.Data[0])
		}
	}
}
