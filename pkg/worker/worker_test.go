package worker

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker/internal/fakebuild"
	"github.com/slipway/slipway/schemas"
)

// The tests run a stand-in builder (see package fakebuild).

type command struct {
	ImageID int64  `json:"image_id"`
	Mode    string `json:"mode"` // ok, terminal, retry, block, expire
}

var errTerminal = errors.New("refused for good")

type harness struct {
	ctx     context.Context
	b       *bus.Bus // the worker's
	cli     *bus.Bus // sends its commands
	w       *Worker
	tracker Tracker[schemas.BuilderPhase, fakebuild.Status]
	release chan struct{}
	started chan struct{}
	events  *testenv.Recorder
	runs    atomic.Int32
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHarness(t *testing.T, cfg Config) *harness {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	env := testenv.ServiceBus(t, ctx, "builder")
	b := env.Bus
	// Commands come from the client, which sends as the catalog does.
	h := &harness{ctx: ctx, b: b, cli: env.Client, release: make(chan struct{}), started: make(chan struct{}, 10)}
	if cfg.TempDir == "" {
		cfg.TempDir = t.TempDir()
	}
	cfg.ProgressInterval = 20 * time.Millisecond
	h.w = New(b, cfg, Spec{Name: "builder", Version: "0.0.1", Description: "test", Handle: h.handle, Jobs: &h.tracker,
		Running: func() []any { return []any{"test", true} }})
	h.events = testenv.Record(t, b.Conn(), nil, b.EventSubject("builder", "*", "*"))
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.w.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.w.Ready():
	case err := <-done:
		t.Fatalf("Run ended early: %v", err)
	case <-ctx.Done():
		t.Fatal("worker not ready")
	}
	return h
}

func (h *harness) handle(ctx context.Context, m *bus.Msg) error {
	h.runs.Add(1)
	var cmd command
	if err := json.Unmarshal(m.Data, &cmd); err != nil {
		return bus.Terminal(err)
	}
	j := fakebuild.New(m, cmd.ImageID, schemas.ContentKindContainer, 100)
	stop := h.tracker.Start(ctx, h.w, m, cmd.ImageID, j)
	var err error
	switch cmd.Mode {
	case "terminal":
		err = bus.Terminal(errTerminal)
	case "retry":
		err = errors.New("try again")
	case "block", "expire":
		j.Update(40, 0)
		h.started <- struct{}{}
		select {
		case <-h.release:
		case <-ctx.Done():
			err = ctx.Err()
		}
		j.SetPhase("upload", 10)
		j.Update(10, 0)
		time.Sleep(60 * time.Millisecond) // a report
	}
	stop()
	return h.w.Settle(ctx, m, err, Settlement{
		Succeeded: func(ctx context.Context) error {
			_, err := h.b.Event(ctx, "built", Token(cmd.ImageID), map[string]any{"image_id": cmd.ImageID},
				bus.CausedBy(m.Envelope))
			return err
		},
		Failed: func(ctx context.Context, err error, f schemas.Failure) {
			if ctx.Err() != nil {
				panic("Failed called with an ended context")
			}
			f.ImageID = &cmd.ImageID
			_, _ = h.b.Event(ctx, "failed", Token(cmd.ImageID), f, bus.CausedBy(m.Envelope))
		},
		Attrs: []any{"image_id", cmd.ImageID},
	})
}

func (h *harness) send(t *testing.T, cmd command) {
	t.Helper()
	if _, err := h.cli.Command(h.ctx, "builder", "build", cmd); err != nil {
		t.Fatal(err)
	}
}

func isEvent(event string, id int64) func(*nats.Msg) bool {
	return func(m *nats.Msg) bool { return strings.HasSuffix(m.Subject, "."+event+"."+Token(id)) }
}

func TestConfigDefaults(t *testing.T) {
	c := Config{TempDir: "rel"}.WithDefaults()
	if !filepath.IsAbs(c.TempDir) || c.Concurrency != 1 || c.ProgressInterval != DefaultProgressInterval ||
		c.AckWait != DefaultAckWait || c.MaxDeliver != DefaultMaxDeliver || c.JobDeadline != bus.DefaultJobDeadline {
		t.Fatalf("defaults %+v", c)
	}
	if c := (Config{}).WithDefaults(); c.TempDir == "" {
		t.Fatal("no TempDir")
	}
	kept := Config{TempDir: "/x", Concurrency: 3, ProgressInterval: 2, AckWait: 3, MaxDeliver: 4, JobDeadline: 5}
	if got := kept.WithDefaults(); got != kept {
		t.Fatalf("set fields changed: %+v", got)
	}
}

func TestJobDeadlineFromEnv(t *testing.T) {
	t.Setenv(bus.EnvJobDeadline, "")
	if d, err := JobDeadlineFromEnv(); err != nil || d != bus.DefaultJobDeadline {
		t.Fatalf("unset: %v %v", d, err)
	}
	t.Setenv(bus.EnvJobDeadline, "90m")
	if d, err := JobDeadlineFromEnv(); err != nil || d != 90*time.Minute {
		t.Fatalf("90m: %v %v", d, err)
	}
	t.Setenv(bus.EnvJobDeadline, "soon")
	if _, err := JobDeadlineFromEnv(); err == nil {
		t.Fatal("a bad duration accepted")
	}
}

func TestRunClaimsItsOwnDirectory(t *testing.T) {
	dir := t.TempDir()
	h := newHarness(t, Config{TempDir: dir})
	if filepath.Dir(h.w.Dir()) != dir || !strings.HasPrefix(filepath.Base(h.w.Dir()), "slipway-builder-") {
		t.Fatalf("Dir %s not claimed under %s", h.w.Dir(), dir)
	}
	if fi, err := os.Stat(h.w.Dir()); err != nil || !fi.IsDir() {
		t.Fatalf("Dir: %v", err)
	}
}

func TestSuccessPublishesOneEvent(t *testing.T) {
	h := newHarness(t, Config{})
	h.send(t, command{ImageID: 1, Mode: "ok"})
	h.events.Wait(t, "built", isEvent("built", 1))
	if n := len(h.events.All(isEvent("failed", 1))); n != 0 {
		t.Fatalf("%d failed events", n)
	}
}

func TestTerminalFailurePublishesOneFailedEvent(t *testing.T) {
	h := newHarness(t, Config{})
	h.send(t, command{ImageID: 2, Mode: "terminal"})
	m := h.events.Wait(t, "failed", isEvent("failed", 2))
	if !strings.Contains(string(m.Data), `"retryable":false`) {
		t.Fatalf("failed event %s", m.Data)
	}
	time.Sleep(300 * time.Millisecond)
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("a terminal failure ran %d times", n)
	}
}

func TestRetriesUntilTheLastDelivery(t *testing.T) {
	h := newHarness(t, Config{MaxDeliver: 2})
	h.send(t, command{ImageID: 3, Mode: "retry"})
	m := h.events.Wait(t, "failed", isEvent("failed", 3))
	var first schemas.Failure
	if err := json.Unmarshal(m.Data, &first); err != nil || !first.Retryable || first.Attempt != 1 ||
		first.MaxAttempts != 2 || !IsAttempt(first) || first.Code != schemas.CodeInternal {
		t.Fatalf("first attempt's failed event %s: want attempt 1 of 2, retryable, with next_attempt_at", m.Data)
	}
	if next, err := time.Parse(time.RFC3339, first.NextAttemptAt); err != nil || time.Until(next) > bus.DefaultBackoff(1)+time.Second {
		t.Errorf("next_attempt_at %q: want about %s from now", first.NextAttemptAt, bus.DefaultBackoff(1))
	}
	time.Sleep(300 * time.Millisecond)
	h.events.Wait(t, "second failed event", func(m *nats.Msg) bool {
		return isEvent("failed", 3)(m) && !strings.Contains(string(m.Data), "next_attempt_at")
	})
	all := h.events.All(isEvent("failed", 3))
	if n := h.runs.Load(); n != 2 || len(all) != 2 {
		t.Fatalf("%d runs, %d failed events; want 2 and 2 (the attempt, then the last)", n, len(all))
	}
	var last schemas.Failure
	if err := json.Unmarshal(all[1].Data, &last); err != nil || IsAttempt(last) || last.Attempt != 2 || !last.Retryable {
		t.Fatalf("last failed event %s: want the final report of attempt 2, retryable", all[1].Data)
	}
}

func TestJobsQueryAndProgress(t *testing.T) {
	h := newHarness(t, Config{})
	h.send(t, command{ImageID: 4, Mode: "block"})
	<-h.started
	h.events.Wait(t, "progress", isEvent("progress", 4))
	var reply struct {
		Jobs []fakebuild.Status `json:"jobs"`
	}
	cli := h.cli // Query validates the reply too
	if err := cli.Query(h.ctx, "builder", "jobs", nil, &reply); err != nil {
		t.Fatal(err)
	}
	if len(reply.Jobs) != 1 || reply.Jobs[0].ImageID != 4 || reply.Jobs[0].Phase != "pull" ||
		reply.Jobs[0].BytesDone != 40 || reply.Jobs[0].BytesTotal != 100 || reply.Jobs[0].Delivered != 1 {
		t.Fatalf("jobs %+v", reply.Jobs)
	}
	close(h.release)
	h.events.Wait(t, "built", isEvent("built", 4))
	if err := cli.Query(h.ctx, "builder", "jobs", nil, &reply); err != nil || len(reply.Jobs) != 0 {
		t.Fatalf("jobs after the end: %+v %v", reply.Jobs, err)
	}
	for _, m := range h.events.All(isEvent("progress", 4)) {
		if m.Header.Get("ce-causationid") == "" {
			t.Errorf("progress event without causation: %v", m.Header)
		}
	}
}

func TestExpiredJobIsFinal(t *testing.T) {
	h := newHarness(t, Config{JobDeadline: 300 * time.Millisecond})
	h.send(t, command{ImageID: 5, Mode: "expire"})
	m := h.events.Wait(t, "failed", isEvent("failed", 5))
	if !strings.Contains(string(m.Data), "deadline") || !strings.Contains(string(m.Data), `"retryable":false`) ||
		!strings.Contains(string(m.Data), `"code":"deadline-exceeded"`) {
		t.Fatalf("failed event %s", m.Data)
	}
	time.Sleep(500 * time.Millisecond)
	if n := h.runs.Load(); n != 1 {
		t.Fatalf("an expired job ran %d times", n)
	}
}

func TestServeRefusesAnEndpointWithoutSchemas(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	b := testenv.ServiceBus(t, ctx, "builder").Bus
	w := New(b, Config{TempDir: t.TempDir()}, Spec{Name: "builder", Handle: func(context.Context, *bus.Msg) error { return nil },
		Queries: map[string]bus.QueryHandler{"nope": func(context.Context, []byte) (any, error) { return nil, nil }}})
	if err := w.Run(ctx); err == nil || !strings.Contains(err.Error(), "serve queries") {
		t.Fatalf("Run = %v", err)
	}
}

// TestSettleFates checks Settle's decisions without a bus: retry, the
// last delivery (dead-letter stream or TerminateLast), terminal.
func TestSettleFates(t *testing.T) {
	w := New(nil, Config{MaxDeliver: 2, Logger: quiet()}, Spec{Name: "test"})
	ctx := context.Background()
	for _, c := range []struct {
		name          string
		delivered     uint64
		err           error
		terminateLast bool
		wantFailed    bool
		wantTerminal  bool
		wantFinal     bool
	}{
		{"retry", 1, errors.New("again"), false, true, false, false},
		{"last", 2, errors.New("again"), false, true, false, true},
		{"last, terminated", 2, errors.New("again"), true, true, true, true},
		{"terminal", 1, bus.Terminal(errTerminal), false, true, true, true},
		{"success", 1, nil, false, false, false, false},
	} {
		var failed, final, succeeded bool
		var report schemas.Failure
		got := w.Settle(ctx, &bus.Msg{Delivered: c.delivered, Subject: "x"}, c.err, Settlement{
			Succeeded:     func(context.Context) error { succeeded = true; return nil },
			Cleanup:       func(_ error, f bool) { final = f },
			Failed:        func(_ context.Context, _ error, f schemas.Failure) { failed, report = true, f },
			TerminateLast: c.terminateLast,
		})
		if c.err == nil {
			if got != nil || !succeeded {
				t.Errorf("%s: %v, succeeded %v", c.name, got, succeeded)
			}
			continue
		}
		if got == nil || failed != c.wantFailed || bus.IsTerminal(got) != c.wantTerminal || final != c.wantFinal {
			t.Errorf("%s: %v (terminal %v), failed %v, final %v", c.name, got, bus.IsTerminal(got), failed, final)
		}
		if IsAttempt(report) == final || report.Retryable == bus.IsTerminal(c.err) || report.Command != "x" ||
			report.Attempt != int64(c.delivered) || FailedStep("failed", report) == "failed" != final {
			t.Errorf("%s: reported %+v (final %v)", c.name, report, final)
		}
	}
}

// ConfigFromEnv reads the variables every worker shares, and names every
// one that is wrong.
func TestConfigFromEnv(t *testing.T) {
	t.Setenv(EnvTempDir, "/scratch")
	t.Setenv("SLIPWAY_TEST_CONCURRENCY", "3")
	t.Setenv(EnvProgressInterval, "250ms")
	t.Setenv(bus.EnvJobDeadline, "2h")
	c, err := ConfigFromEnv("SLIPWAY_TEST_CONCURRENCY")
	if err != nil {
		t.Fatal(err)
	}
	want := Config{TempDir: "/scratch", Concurrency: 3, ProgressInterval: 250 * time.Millisecond, JobDeadline: 2 * time.Hour}
	if c != want {
		t.Errorf("ConfigFromEnv = %+v, want %+v", c, want)
	}
	t.Setenv("SLIPWAY_TEST_CONCURRENCY", "many")
	t.Setenv(EnvProgressInterval, "often")
	if _, err := ConfigFromEnv("SLIPWAY_TEST_CONCURRENCY"); err == nil ||
		!strings.Contains(err.Error(), "SLIPWAY_TEST_CONCURRENCY") || !strings.Contains(err.Error(), EnvProgressInterval) {
		t.Errorf("err = %v, want both variables named", err)
	}
}
