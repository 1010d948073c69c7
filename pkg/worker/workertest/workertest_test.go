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
	// byCommand: the events are about the command (cmd-<seq>), an ID the
	// sender does not know beforehand.
	byCommand bool
	w         *worker.Worker
	tracker   worker.Tracker[schemas.BuilderPhase, fakebuild.Status]
	mu        sync.Mutex
	holds     map[string]chan struct{}
}

func (f *fake) hold(name string) chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.holds[name] == nil {
		f.holds[name] = make(chan struct{})
	}
	return f.holds[name]
}

// token is the id of the events about m's job.
func (f *fake) token(m *bus.Msg, cmd command) string {
	if f.byCommand {
		return worker.CommandToken(m)
	}
	return worker.Token(cmd.ImageID)
}

func (f *fake) handle(ctx context.Context, m *bus.Msg) error {
	var cmd command
	err := json.Unmarshal(m.Data, &cmd)
	token := f.token(m, cmd)
	if err != nil || cmd.Bad {
		err = bus.WithCode(schemas.CodeInvalidCommand, errors.Join(errors.New("invalid command"), err))
		_, _ = f.w.Bus().Event(ctx, "failed", token, bus.NewFailure(err), bus.CausedBy(m.Envelope))
		return bus.Terminal(err)
	}
	j := fakebuild.New(m, cmd.ImageID, schemas.ContentKindDisk, 100)
	var stop func()
	if f.byCommand {
		stop = f.tracker.StartSource(ctx, f.w, m, "s3://slipway-uploads/kernels/1/vmlinuz", j)
	} else {
		stop = f.tracker.Start(ctx, f.w, m, cmd.ImageID, j)
	}
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
			_, err := f.w.Bus().Event(ctx, "built", token, map[string]any{"image_id": cmd.ImageID},
				bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, "built"))
			return err
		},
		Failed: func(ctx context.Context, err error, fl schemas.Failure) {
			if !f.byCommand {
				fl.ImageID = &cmd.ImageID
			}
			_, _ = f.w.Bus().Event(ctx, "failed", token, fl,
				bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, worker.FailedStep("failed", fl)))
		},
	})
}

func TestFakeWorkerConforms(t *testing.T) { runFake(t, false) }

// A worker whose events are about the command (cmd-<seq>) is known by
// their causation.
func TestFakeWorkerWithIDsNotKnownBeforehandConforms(t *testing.T) { runFake(t, true) }

func runFake(t *testing.T, byCommand bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	env := testenv.ServiceBus(t, ctx, "builder")
	b, cli := env.Bus, env.Client
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	f := &fake{byCommand: byCommand, holds: map[string]chan struct{}{}}
	next := workertest.Seq(1)
	cmd := func(c command) workertest.Command {
		wc := workertest.Command{Verb: "build", ID: worker.Token(c.ImageID), Data: c,
			Opts: []bus.PubOption{bus.WithCorrelation(envelope.NewID())}}
		if byCommand {
			wc.ID = ""
		}
		return wc
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
