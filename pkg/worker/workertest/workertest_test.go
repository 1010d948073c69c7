package workertest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/pkg/worker/internal/fakebuild"
	"github.com/slipway/slipway/pkg/worker/workertest"
	"github.com/slipway/slipway/schemas"
)

// A stand-in builder (see package fakebuild): the suite's own test.

type command struct {
	ImageID int64  `json:"image_id"`
	Hold    string `json:"hold,omitempty"`
	Bad     bool   `json:"bad,omitempty"`
}

// fake is the command handler; holds are the release channels of slow
// commands.
type fake struct {
	w       *worker.Worker
	tracker worker.Tracker[fakebuild.Progress, fakebuild.Status]
	mu      sync.Mutex
	holds   map[string]chan struct{}
}

func (f *fake) hold(name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds[name] == nil {
		f.holds[name] = make(chan struct{})
	}
	return f.holds[name]
}

func (f *fake) handle(ctx context.Context, m *bus.Msg) error {
	var cmd command
	if err := json.Unmarshal(m.Data, &cmd); err != nil || cmd.Bad {
		err = errors.Join(errors.New("invalid command"), err)
		_, _ = f.w.Bus().Event(ctx, "failed", worker.Token(cmd.ImageID), map[string]any{"error": err.Error()}, bus.CausedBy(m.Envelope))
		return bus.Terminal(err)
	}
	j := fakebuild.New(m, cmd.ImageID, schemas.ContentKindDisk, 100)
	stop := f.tracker.Start(ctx, f.w, m, worker.Token(cmd.ImageID), j)
	var err error
	if cmd.Hold != "" {
		for i := int64(1); i <= 3; i++ {
			j.Update(i*10, 0)
			time.Sleep(15 * time.Millisecond)
		}
		select {
		case <-f.hold(cmd.Hold):
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		j.SetPhase("upload", 10)
		j.Update(10, 0)
		time.Sleep(30 * time.Millisecond)
	}
	stop()
	return f.w.Settle(ctx, m, err, worker.Settlement{
		Succeeded: func(ctx context.Context) error {
			_, err := f.w.Bus().Event(ctx, "built", worker.Token(cmd.ImageID), map[string]any{"image_id": cmd.ImageID},
				bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, "built"))
			return err
		},
		Failed: func(ctx context.Context, err error, terminal bool) {
			_, _ = f.w.Bus().Event(ctx, "failed", worker.Token(cmd.ImageID), map[string]any{"error": err.Error()},
				bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, "failed"))
		},
	})
}

func TestFakeWorkerConforms(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := testenv.ServiceBus(t, ctx, "builder")
	b, cli := env.Bus, env.Client
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fake{holds: map[string]chan struct{}{}}
	next := workertest.Seq(1)
	cmd := func(c command) workertest.Command {
		return workertest.Command{Verb: "build", ID: worker.Token(c.ImageID), Data: c,
			Opts: []bus.PubOption{bus.WithCorrelation(envelope.NewID())}}
	}
	workertest.Run(t, workertest.Adapter{
		Client: cli, Service: "builder", Succeeded: "built", Failed: "failed",
		Start: func(t *testing.T) func() {
			f.w = worker.New(b, worker.Config{TempDir: t.TempDir(), ProgressInterval: 10 * time.Millisecond,
				AckWait: 2 * time.Second, Logger: quiet}, worker.Spec{Name: "builder", Handle: f.handle, Jobs: &f.tracker})
			return workertest.Start(t, f.w.Run, f.w.Ready())
		},
		Good: func(*testing.T) workertest.Command { return cmd(command{ImageID: next()}) },
		Bad:  func(*testing.T) workertest.Command { return cmd(command{ImageID: next(), Bad: true}) },
		Slow: func(t *testing.T) (workertest.Command, func()) {
			id := next()
			name := worker.Token(id)
			var once sync.Once
			release := func() { once.Do(func() { close(f.hold(name)) }) }
			t.Cleanup(release)
			return cmd(command{ImageID: id, Hold: name}), release
		},
	})
}
