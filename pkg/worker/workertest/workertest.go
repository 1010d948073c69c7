// Package workertest is the conformance suite of Slipway's workers, in the
// style of watermill's pubsub tests: a worker's own tests hand Run a small
// Adapter (how to start the worker, a command that succeeds, one that is
// wrong, one that stays in flight until released) and the suite checks
// what every worker built on package worker must do. A command's events
// are those it caused (ce-causationid), about the ID the adapter names, or
// about any ID when that is not known before the job (the kernel
// registry's, allocated by the add):
//
//   - Redelivery: the same command delivered again (same ce-id, as after a
//     lost ack) ends in exactly one success event in the event stream.
//   - BadCommand: a command wrong as sent gets exactly one failed event,
//     valid against its schema, with a code from the catalogue
//     (schemas/errors.json) and not retryable; no success; it is not
//     retried.
//   - ProgressMonotone: progress events of a job are the one progress
//     shape (schemas.Progress, valid against the worker's progress schema)
//     and never go back: within a phase bytes_done does not decrease, and
//     a phase left is never entered again.
//   - KillMidJob: a worker stopped during a job, and a new one started,
//     bring the command to exactly one terminal event (success or failed).
//   - JobsQuery: the `jobs` query lists the job in flight, with its
//     command's ce-id, its delivery count, phase and start, in a reply its
//     schema accepts, and lists nothing once it is over.
package workertest

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// Timeout bounds each wait of the suite (a job, an event, a redelivery).
var Timeout = 2 * time.Minute

// Command is one command the suite sends.
type Command struct {
	Verb string
	Data any
	// ID is the id token of the events about the command's job (an image
	// ID). Empty when it is not known beforehand (an ID the job allocates,
	// "cmd-<seq>"): the suite then knows the command's events by their
	// ce-causationid alone. Either way an event counts only when it was
	// caused by the command.
	ID string
	// Opts are added when publishing (a correlation, say). Give every
	// command a saga of its own, as in production: event IDs derived from
	// a saga shared by several commands are dropped as duplicates.
	Opts []bus.PubOption
}

// Adapter is what the suite needs of one worker.
type Adapter struct {
	// Client is a bus on the worker's NATS server, not the worker's own;
	// the suite publishes, queries, reads the streams and watches the
	// worker's commands through it. On a server that authenticates, only
	// a witness may do all that (testenv.WitnessBus).
	Client *bus.Bus
	// Service is the worker's name.
	Service string
	// Succeeded and Failed name the success and failure events
	// ("converted", "failed").
	Succeeded, Failed string
	// Start runs a new worker; it returns once the worker serves queries,
	// and stop returns once the worker's Run has. The worker's AckWait
	// should be short (a few seconds): KillMidJob waits for a redelivery.
	Start func(t *testing.T) (stop func())
	// Good returns a new command whose job succeeds.
	Good func(t *testing.T) Command
	// Bad returns a new command that is wrong as sent.
	Bad func(t *testing.T) Command
	// Slow returns a new command whose job succeeds but stays in flight,
	// reporting progress, until release is called (release is idempotent).
	Slow func(t *testing.T) (cmd Command, release func())
}

// Run runs every check of the suite as a subtest of t.
func Run(t *testing.T, a Adapter) {
	t.Helper()
	s := &suite{a: a}
	t.Run("Redelivery", s.redelivery)
	t.Run("BadCommand", s.badCommand)
	t.Run("ProgressMonotone", s.progressMonotone)
	t.Run("KillMidJob", s.killMidJob)
	t.Run("JobsQuery", s.jobsQuery)
}

type suite struct{ a Adapter }

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	t.Cleanup(cancel)
	return ctx
}

// started starts a worker for the check, stopped when the check ends, and
// returns the check's context.
func (s *suite) started(t *testing.T) context.Context {
	ctx := s.ctx(t)
	t.Cleanup(s.a.Start(t))
	return ctx
}

// subject is the subject of event about id ("*" when id is unknown).
func (s *suite) subject(event, id string) string {
	if id == "" {
		id = "*"
	}
	return s.a.Client.EventSubject(s.a.Service, event, id)
}

// event is the event name of m, an event of the service.
func (s *suite) event(m *nats.Msg) string {
	rest := strings.TrimPrefix(m.Subject, strings.TrimSuffix(s.a.Client.EventSubject(s.a.Service, "", ""), "."))
	event, _, _ := strings.Cut(rest, ".")
	return event
}

// causedBy tells whether m was caused by the command with ce-id cmdID.
func causedBy(m *nats.Msg, cmdID string) bool {
	return m.Header.Get(envelope.HeaderCausationID) == cmdID
}

// watch records the events about cmd's id (every event of the service
// when it is unknown) from now on.
func (s *suite) watch(t *testing.T, cmd Command) chan *nats.Msg {
	t.Helper()
	ch := make(chan *nats.Msg, 4096)
	sub, err := s.a.Client.Conn().ChanSubscribe(s.subject("*", cmd.ID), ch)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := s.a.Client.Conn().Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// send publishes cmd and returns its envelope.
func (s *suite) send(t *testing.T, ctx context.Context, cmd Command, opts ...bus.PubOption) envelope.Envelope {
	t.Helper()
	env, err := s.a.Client.Command(ctx, s.a.Service, cmd.Verb, cmd.Data, append(slices.Clone(cmd.Opts), opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// wait returns the first event of one of the names that ch brings that
// the command with ce-id cmdID caused, collecting the command's others
// (progress) in seen.
func (s *suite) wait(t *testing.T, ch chan *nats.Msg, cmdID string, seen *[]*nats.Msg, events ...string) *nats.Msg {
	t.Helper()
	timeout := time.After(Timeout)
	for {
		select {
		case m := <-ch:
			if !causedBy(m, cmdID) {
				continue
			}
			if slices.Contains(events, s.event(m)) && !isAttempt(m) {
				return m
			}
			if seen != nil {
				*seen = append(*seen, m)
			}
		case <-timeout:
			t.Fatalf("no %v event caused by command %s within %s", events, cmdID, Timeout)
			return nil
		}
	}
}

// isAttempt tells a failed attempt that will be retried (next_attempt_at)
// from a command's end.
func isAttempt(m *nats.Msg) bool {
	var f schemas.Failure
	return json.Unmarshal(m.Data, &f) == nil && f.NextAttemptAt != ""
}

// stored counts the event events about cmd stored in the event stream:
// what a saga sees, after JetStream dropped duplicates. With cmd's id
// known, every event on its subject counts; without, those cmdID caused.
func (s *suite) stored(t *testing.T, ctx context.Context, cmd Command, cmdID, event string) uint64 {
	t.Helper()
	js, err := jetstream.New(s.a.Client.Conn())
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, s.a.Client.EventStream())
	if err != nil {
		t.Fatal(err)
	}
	subject := s.subject(event, cmd.ID)
	if cmd.ID != "" {
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		return info.State.Subjects[subject]
	}
	cons, err := st.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for pending := cons.CachedInfo().NumPending; pending > 0; pending-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("read %s: %v", subject, err)
		}
		if m.Headers().Get(envelope.HeaderCausationID) == cmdID {
			n++
		}
	}
	return n
}

// drained waits until the command stream holds no command of the service:
// every one was acked or terminated. Every check waits for it before it
// stops its worker: an event seen is not yet an event acknowledged, and a
// command left behind would be redelivered into the next check.
func (s *suite) drained(t *testing.T, ctx context.Context) {
	t.Helper()
	js, err := jetstream.New(s.a.Client.Conn())
	if err != nil {
		t.Fatal(err)
	}
	subject := s.a.Client.CommandFilter(s.a.Service)
	for {
		st, err := js.Stream(ctx, s.a.Client.CommandStream())
		if err != nil {
			t.Fatal(err)
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(subject))
		if err != nil {
			t.Fatal(err)
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		if n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("commands still in the stream: %v", info.State.Subjects)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// settleTime lets a worker publish what it would publish twice.
const settleTime = 500 * time.Millisecond

func (s *suite) redelivery(t *testing.T) {
	ctx := s.started(t)
	cmd := s.a.Good(t)
	events := s.watch(t, cmd)
	raw := make(chan *nats.Msg, 1)
	sub, err := s.a.Client.Conn().ChanSubscribe(s.a.Client.CommandSubject(s.a.Service, cmd.Verb), raw)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	env := s.send(t, ctx, cmd)
	var sent *nats.Msg
	select {
	case sent = <-raw:
	case <-ctx.Done():
		t.Fatal("the command was not seen")
	}
	s.wait(t, events, env.ID, nil, s.a.Succeeded, s.a.Failed)
	s.drained(t, ctx)

	// The same message again, as JetStream redelivers it when an ack is
	// lost: only the stream's duplicate check is left out.
	again := nats.NewMsg(sent.Subject)
	again.Data = sent.Data
	for k, v := range sent.Header {
		if k != jetstream.MsgIDHeader {
			again.Header[k] = v
		}
	}
	js, err := jetstream.New(s.a.Client.Conn())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.PublishMsg(ctx, again); err != nil {
		t.Fatal(err)
	}
	s.drained(t, ctx)
	time.Sleep(settleTime)
	if n := s.stored(t, ctx, cmd, env.ID, s.a.Succeeded); n != 1 {
		t.Errorf("command %s delivered twice: %d %s events stored, want 1", env.ID, n, s.a.Succeeded)
	}
	if n := s.stored(t, ctx, cmd, env.ID, s.a.Failed); n != 0 {
		t.Errorf("command %s delivered twice: %d %s events stored, want 0", env.ID, n, s.a.Failed)
	}
}

func (s *suite) badCommand(t *testing.T) {
	ctx := s.started(t)
	cmd := s.a.Bad(t)
	events := s.watch(t, cmd)
	env := s.send(t, ctx, cmd)
	m := s.wait(t, events, env.ID, nil, s.a.Succeeded, s.a.Failed)
	if s.event(m) != s.a.Failed {
		t.Fatalf("a bad command got %s %s", m.Subject, m.Data)
	}
	var f schemas.Failure
	if err := schemas.Validate(schemas.KindEvent, s.a.Service, s.a.Failed, m.Data); err != nil {
		t.Errorf("the failed event does not fit its schema: %v", err)
	} else if err := json.Unmarshal(m.Data, &f); err != nil {
		t.Fatal(err)
	}
	if _, ok := schemas.LookupErrorCode(f.Code); !ok || f.Retryable {
		t.Errorf("a bad command's failed event %s: want a code of the catalogue and retryable false", m.Data)
	}
	s.drained(t, ctx)
	time.Sleep(settleTime)
	if n := s.stored(t, ctx, cmd, env.ID, s.a.Failed); n != 1 {
		t.Errorf("%d %s events stored, want 1", n, s.a.Failed)
	}
	if n := s.stored(t, ctx, cmd, env.ID, s.a.Succeeded); n != 0 {
		t.Errorf("%d %s events stored for a bad command", n, s.a.Succeeded)
	}
}

// decodeProgress reads a progress event, which must be the one progress
// shape every worker publishes, about the command's image.
func (s *suite) decodeProgress(t *testing.T, m *nats.Msg, id string) schemas.Progress {
	t.Helper()
	if err := schemas.Validate(schemas.KindEvent, s.a.Service, "progress", m.Data); err != nil {
		t.Fatalf("progress %s: %v", m.Data, err)
	}
	var p schemas.Progress
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatalf("progress %s: %v", m.Data, err)
	}
	switch {
	case id == "" && (p.ImageID != nil || p.Source == ""):
		t.Fatalf("progress %s of a job about no image yet: want its source and no image_id", m.Data)
	case id != "" && (p.ImageID == nil || strconv.FormatInt(*p.ImageID, 10) != id):
		t.Fatalf("progress %s on the subject of %s", m.Data, id)
	}
	return p
}

func (s *suite) progressMonotone(t *testing.T) {
	ctx := s.started(t)
	cmd, release := s.a.Slow(t)
	defer release()
	events := s.watch(t, cmd)
	env := s.send(t, ctx, cmd)
	var seen []*nats.Msg
	first := s.wait(t, events, env.ID, &seen, "progress")
	seen = append(seen, first)
	release()
	end := s.wait(t, events, env.ID, &seen, s.a.Succeeded, s.a.Failed)
	if s.event(end) != s.a.Succeeded {
		t.Fatalf("the job ended with %s %s", end.Subject, end.Data)
	}
	s.drained(t, ctx) // the worker stops once it is done with the command
	var left []string
	var last *schemas.Progress
	for _, m := range seen {
		if s.event(m) != "progress" {
			continue
		}
		p := s.decodeProgress(t, m, cmd.ID)
		switch {
		case last == nil:
		case p.Phase == last.Phase:
			if p.BytesDone < last.BytesDone {
				t.Errorf("phase %s went back from %d to %d bytes", p.Phase, last.BytesDone, p.BytesDone)
			}
		default:
			if slices.Contains(left, p.Phase) {
				t.Errorf("phase %s entered again after %v", p.Phase, left)
			}
			left = append(left, last.Phase)
		}
		last = &p
	}
}

func (s *suite) killMidJob(t *testing.T) {
	ctx := s.ctx(t)
	stop := s.a.Start(t)
	cmd, release := s.a.Slow(t)
	defer release()
	events := s.watch(t, cmd)
	env := s.send(t, ctx, cmd)
	s.wait(t, events, env.ID, nil, "progress")
	stop() // the job is abandoned mid-way
	stop = s.a.Start(t)
	defer stop()
	release()
	s.wait(t, events, env.ID, nil, s.a.Succeeded, s.a.Failed)
	s.drained(t, ctx)
	time.Sleep(settleTime)
	ok := s.stored(t, ctx, cmd, env.ID, s.a.Succeeded)
	failed := s.stored(t, ctx, cmd, env.ID, s.a.Failed)
	if ok+failed != 1 {
		t.Errorf("after a kill mid-job: %d %s and %d %s events stored, want exactly one terminal event",
			ok, s.a.Succeeded, failed, s.a.Failed)
	}
}

// jobRow is what the suite checks of a row of the jobs reply.
type jobRow struct {
	ID        string    `json:"id"`
	Delivered uint64    `json:"delivered"`
	StartedAt time.Time `json:"started_at"`
	Phase     string    `json:"phase"`
}

func (s *suite) jobs(t *testing.T, ctx context.Context) []jobRow {
	t.Helper()
	var reply struct {
		Jobs []jobRow `json:"jobs"`
	}
	// Query checks the reply against the endpoint's schema.
	if err := s.a.Client.Query(ctx, s.a.Service, "jobs", nil, &reply); err != nil {
		t.Fatalf("jobs query: %v", err)
	}
	return reply.Jobs
}

func (s *suite) jobsQuery(t *testing.T) {
	ctx := s.started(t)
	if rows := s.jobs(t, ctx); len(rows) != 0 {
		t.Fatalf("jobs of an idle worker: %+v", rows)
	}
	cmd, release := s.a.Slow(t)
	defer release()
	events := s.watch(t, cmd)
	before := time.Now()
	env := s.send(t, ctx, cmd)
	s.wait(t, events, env.ID, nil, "progress")
	rows := s.jobs(t, ctx)
	if len(rows) != 1 {
		t.Fatalf("jobs in flight: %+v, want the one", rows)
	}
	r := rows[0]
	// A delivery may go to a pull request a stopped worker left behind and
	// come again after the ack wait: delivered is at least 1, not 1.
	if r.ID != env.ID || r.Delivered < 1 || r.Phase == "" ||
		r.StartedAt.Before(before.Add(-time.Second)) || r.StartedAt.After(time.Now()) {
		t.Errorf("job in flight %+v; want id %s, delivered, a phase, started since %s", r, env.ID, before.Format(time.RFC3339Nano))
	}
	release()
	s.wait(t, events, env.ID, nil, s.a.Succeeded, s.a.Failed)
	s.drained(t, ctx)
	deadline := time.Now().Add(5 * time.Second)
	for {
		rows := s.jobs(t, ctx)
		if len(rows) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("jobs after the end: %+v", rows)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Seq returns a func that numbers the suite's commands from first on, as
// the id tokens of adapters' events.
func Seq(first int64) func() int64 {
	n := first - 1
	return func() int64 { n++; return n }
}

// Start runs run (a worker's Run) until the returned stop, which waits for
// it and fails t when it returned an error; Start returns once ready is
// closed. It is what an Adapter's Start usually is.
func Start(t *testing.T, run func(context.Context) error, ready <-chan struct{}) (stop func()) {
	t.Helper()
	return testenv.Start(t, context.Background(), "the worker", run, ready)
}

// Holds keeps a Slow command's fetches waiting until the command is
// released: the test server its worker fetches from asks Wait before it
// serves. The zero value is ready.
type Holds struct {
	mu   sync.Mutex
	held map[string]chan struct{}
}

// Hold holds the fetches of key until release, which is idempotent and
// runs when t ends too.
func (h *Holds) Hold(t *testing.T, key string) (release func()) {
	ch := make(chan struct{})
	h.mu.Lock()
	if h.held == nil {
		h.held = map[string]chan struct{}{}
	}
	h.held[key] = ch
	h.mu.Unlock()
	var once sync.Once
	release = func() { once.Do(func() { close(ch) }) }
	t.Cleanup(release)
	return release
}

// Wait waits until no key that match accepts is held any more; false when
// ctx (the request's) ended first.
func (h *Holds) Wait(ctx context.Context, match func(key string) bool) bool {
	h.mu.Lock()
	var waits []chan struct{}
	for key, ch := range h.held {
		if match(key) {
			waits = append(waits, ch)
		}
	}
	h.mu.Unlock()
	for _, ch := range waits {
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
	return true
}
