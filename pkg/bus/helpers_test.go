package bus

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// startServer runs a real in-process nats-server with JetStream.
func startServer(tb testing.TB, configure ...func(*server.Options) error) *server.Server {
	tb.Helper()
	opts := &server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true,
	}
	for _, c := range configure {
		if err := c(opts); err != nil {
			tb.Fatal(err)
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server not ready")
	}
	tb.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	return srv
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newBus connects a Bus for service to srv and sets up the streams.
func newBus(tb testing.TB, srv *server.Server, service string) *Bus {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b, err := Connect(ctx, Config{URL: srv.ClientURL(), Service: service, Logger: quietLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(b.Close)
	if err := b.Setup(ctx); err != nil {
		tb.Fatal(err)
	}
	return b
}

func testCtx(tb testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

// recorder collects the messages a handler saw.
type recorder struct {
	mu   sync.Mutex
	msgs []*Msg
	at   []time.Time
	ch   chan *Msg
}

func newRecorder() *recorder { return &recorder{ch: make(chan *Msg, 100)} }

func (r *recorder) add(m *Msg) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.at = append(r.at, time.Now())
	r.mu.Unlock()
	r.ch <- m
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

func (r *recorder) wait(tb testing.TB, d time.Duration) *Msg {
	tb.Helper()
	select {
	case m := <-r.ch:
		return m
	case <-time.After(d):
		tb.Fatalf("no message within %s", d)
		return nil
	}
}

func streamMsgs(tb testing.TB, b *Bus, stream string) uint64 {
	tb.Helper()
	s, err := b.JetStream().Stream(context.Background(), stream)
	if err != nil {
		tb.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return info.State.Msgs
}

// consume runs h on b's commands until the test ends.
func consume(tb testing.TB, b *Bus, h Handler, opts ...ConsumeOption) Stopper {
	tb.Helper()
	stop, err := b.ConsumeCommands(testCtx(tb), h, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(stop.Stop)
	return stop
}

// recording consumes b's commands, acking each, into a recorder until
// the test ends.
func recording(tb testing.TB, b *Bus, opts ...ConsumeOption) *recorder {
	tb.Helper()
	got := newRecorder()
	consume(tb, b, func(_ context.Context, m *Msg) error { got.add(m); return nil }, opts...)
	return got
}

// waitEmpty waits until stream holds no message; it fails the test after
// within.
func waitEmpty(tb testing.TB, b *Bus, stream string, within time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for n := streamMsgs(tb, b, stream); n != 0; n = streamMsgs(tb, b, stream) {
		if time.Now().After(deadline) {
			tb.Fatalf("stream %s still holds %d messages after %s", stream, n, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
