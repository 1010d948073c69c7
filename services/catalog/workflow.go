package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The workflow core. A saga kind is a flow: its phases in order, each with
// the commands it sends, the events that advance (or fail) it, its
// deadline, its compensation and what to do after a restart. The core
// routes an incoming event to the saga it is about and to the handler the
// saga's flow declares for it, runs deadlines and restarts, and starts and
// advances sagas; it names no kind. The declarations are importsaga.go,
// dockersaga.go, luks.go and slots.go.

// eventHandler handles an event about a saga (nil: about no saga of a kind
// that waits for it, see flow.unclaimed).
type eventHandler func(ctx context.Context, m *bus.Msg, sg *saga.Saga) error

// flow declares one saga kind.
type flow struct {
	kind   string
	phases []phase
	// what names the work in messages ("import", "the encryption").
	what string
	// reporter names who reports the blob the flow's commit phase checks.
	reporter string
	// fail ends a saga of this kind with reason: the image learns why and
	// the saga is failed and compensated. cause is the message that made
	// it fail (nil: a deadline).
	fail func(ctx context.Context, sg *saga.Saga, code, reason string, cause *envelope.Envelope) error
	// unclaimed handles events, by "<service>.<event>", that no saga of a
	// kind waiting for them claims (a late or stray report).
	unclaimed map[string]eventHandler
}

// phase declares one phase of a flow.
type phase struct {
	name saga.Phase
	// commands the phase sends, "<service>.<verb>" (for the reader: the
	// flow's code sends them).
	commands []string
	// on: the events that advance or fail the phase, by "<service>.<event>".
	on       map[string]eventHandler
	deadline time.Duration
	// compensate undoes the phase when the saga fails.
	compensate func(ctx context.Context, sg *saga.Saga) error
	// expired words a deadline passed in this phase (nil: "<what> did not
	// finish within <d>").
	expired func(sg *saga.Saga, d time.Duration) string
	// resume picks up the phase after a restart (nil: nothing to do).
	resume func(ctx context.Context, sg *saga.Saga) error
}

// eventKey names an event as flows do: "<service>.<event>".
func eventKey(service, event string) string { return service + "." + event }

// declare registers the flows and returns their definitions for the saga
// engine.
func (s *Service) declare(flows ...*flow) []saga.Definition {
	s.flows = make(map[string]*flow, len(flows))
	defs := make([]saga.Definition, 0, len(flows))
	for _, f := range flows {
		s.flows[f.kind] = f
		def := saga.Definition{Kind: f.kind, Phases: map[saga.Phase]saga.PhaseSpec{}}
		for _, p := range f.phases {
			def.Phases[p.name] = saga.PhaseSpec{Deadline: p.deadline, Compensate: p.compensate}
		}
		defs = append(defs, def)
	}
	return defs
}

// flowOf is the flow of a saga kind (nil for a kind the catalog does not
// declare).
func (s *Service) flowOf(kind string) *flow { return s.flows[kind] }

func (f *flow) phase(name saga.Phase) *phase {
	for i := range f.phases {
		if f.phases[i].name == name {
			return &f.phases[i]
		}
	}
	return nil
}

// handler is what the flow does with an event, whichever phase declares it:
// the handler decides what the event means in the saga's current phase (a
// duplicate, a redelivery after a crash, a late report).
func (f *flow) handler(key string) eventHandler {
	for _, p := range f.phases {
		if h := p.on[key]; h != nil {
			return h
		}
	}
	return nil
}

// sortedFlows lists the flows by kind, so routing does not depend on map
// order.
func (s *Service) sortedFlows() []*flow {
	kinds := make([]string, 0, len(s.flows))
	for k := range s.flows {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	out := make([]*flow, len(kinds))
	for i, k := range kinds {
		out[i] = s.flows[k]
	}
	return out
}

// eventKeys lists every event some flow waits for or handles unclaimed.
func (s *Service) eventKeys() []string {
	set := map[string]bool{}
	for _, f := range s.flows {
		for _, p := range f.phases {
			for k := range p.on {
				set[k] = true
			}
		}
		for k := range f.unclaimed {
			set[k] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// eventFilters are the events the catalog consumes: those its flows wait
// for.
func (s *Service) eventFilters() []string {
	keys := s.eventKeys()
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = s.bus.Prefix() + ".evt." + k + ".>"
	}
	return out
}

// handleEvent is the router: event → saga (by correlation, else through
// the image it names) → the handler its flow declares. An event no saga
// of a waiting kind claims goes to an unclaimed handler, if a flow has
// one. A worker's failed attempt that will be tried again ends no step:
// it is republished under the image (attemptOf).
func (s *Service) handleEvent(ctx context.Context, m *bus.Msg) error {
	key := eventKey(m.Service, m.Name)
	if !s.waitsFor(key) {
		return nil
	}
	if err := schemas.Validate(schemas.KindEvent, m.Service, m.Name, m.Data); err != nil {
		s.log.Error("ignoring an invalid event", "subject", m.Subject, "err", err)
		return bus.Terminal(err)
	}
	if f, ok := attemptOf(m); ok {
		return s.republishAttempt(ctx, m, f)
	}
	if id, ok := eventImageID(m); ok {
		sg, err := s.findSaga(ctx, m.Envelope.CorrelationID, id)
		switch {
		case err == nil:
			if h := s.flowOf(sg.Kind).handler(key); h != nil {
				return h(ctx, m, sg)
			}
		case !errors.Is(err, saga.ErrNotFound):
			return err
		}
	}
	for _, f := range s.sortedFlows() {
		if h := f.unclaimed[key]; h != nil {
			return h(ctx, m, nil)
		}
	}
	return nil
}

// waitsFor reports whether some flow waits for or handles the event.
func (s *Service) waitsFor(key string) bool {
	for _, f := range s.flows {
		if f.handler(key) != nil || f.unclaimed[key] != nil {
			return true
		}
	}
	return false
}

// eventImageID is the image an event is about: its image_id, else its
// subject's ID token (a failure without image_id).
func eventImageID(m *bus.Msg) (int64, bool) {
	if id, ok := schemas.PeekImageID(m.Data); ok {
		return id, true
	}
	if strings.HasPrefix(m.ID, "cmd-") {
		return 0, false
	}
	n, err := strconv.ParseInt(m.ID, 10, 64)
	return n, err == nil && n >= 0
}

// findSaga finds the saga an event about an image belongs to: by the
// event's correlation (the saga ID), else through the image record.
func (s *Service) findSaga(ctx context.Context, correlation string, imageID int64) (*saga.Saga, error) {
	if correlation != "" {
		sg, err := s.sagas.Get(ctx, correlation)
		if err == nil && s.flowOf(sg.Kind) != nil && sg.Subject == idToken(imageID) {
			return sg, nil
		}
		if err != nil && !errors.Is(err, saga.ErrNotFound) {
			return nil, err
		}
	}
	img, _, err := s.images.Get(ctx, imageID)
	if errors.Is(err, ErrNotFound) || (err == nil && img.SagaID == "") {
		return nil, saga.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	sg, err := s.sagas.Get(ctx, img.SagaID)
	if err != nil {
		return nil, err
	}
	if s.flowOf(sg.Kind) == nil {
		return nil, saga.ErrNotFound
	}
	return sg, nil
}

// sagaNamespace derives saga IDs from command IDs when the command's
// correlation ID cannot serve.
var sagaNamespace = uuid.MustParse("5b1e4c1e-7c55-4d8e-9a43-2f6a3b0f4c11")

// chooseSagaID is the command's correlation ID, so every message of the
// workflow shares it; a correlation that is not a UUID or already names
// another saga gives an ID derived from the command's.
func (s *Service) chooseSagaID(ctx context.Context, m *bus.Msg) (string, error) {
	derived := uuid.NewSHA1(sagaNamespace, []byte(m.Envelope.ID)).String()
	c := m.Envelope.CorrelationID
	if _, err := uuid.Parse(c); err != nil {
		return derived, nil
	}
	_, err := s.sagas.Get(ctx, c)
	switch {
	case errors.Is(err, saga.ErrNotFound):
		return c, nil
	case err != nil:
		return "", err
	}
	return derived, nil
}

// start records a new saga of kind about image imageID in the flow's
// first phase; finding it stored by a previous delivery is success.
func (s *Service) start(ctx context.Context, id, kind string, imageID int64, data any, owned ...string) error {
	first := s.flowOf(kind).phases[0]
	sg := &saga.Saga{
		ID:       id,
		Kind:     kind,
		Subject:  idToken(imageID),
		Phase:    first.name,
		Deadline: time.Now().UTC().Add(first.deadline),
		Owned:    owned,
	}
	if err := sg.SetData(data); err != nil {
		return err
	}
	err := s.sagas.Create(ctx, sg)
	if errors.Is(err, saga.ErrExists) {
		cur, gerr := s.sagas.Get(ctx, id)
		if gerr != nil {
			return gerr
		}
		if cur.Subject != sg.Subject {
			return fmt.Errorf("saga %s already belongs to image %s, not %s", id, cur.Subject, sg.Subject)
		}
		return nil // a redelivery: started already
	}
	return err
}

// claimSaga is the saga of a command that starts one on an existing
// image: the one a previous delivery claimed (prior), else a new ID
// claimed for the command in the dedup bucket.
func (s *Service) claimSaga(ctx context.Context, m *bus.Msg, prior *processed, imageID int64) (string, error) {
	if prior != nil {
		return prior.SagaID, nil
	}
	sagaID, err := s.chooseSagaID(ctx, m)
	if err != nil {
		return "", err
	}
	won, err := s.dedupClaim(ctx, m.Envelope.ID, processed{ImageID: imageID, SagaID: sagaID})
	return won.SagaID, err
}

// startData starts saga id of kind about imageID with data *d, or finds
// it started by a previous delivery, and reads its stored data back into
// d (what the first delivery recorded wins).
func startData[D any](ctx context.Context, s *Service, id, kind string, imageID int64, d *D) (*saga.Saga, error) {
	if err := s.start(ctx, id, kind, imageID, *d); err != nil {
		return nil, err
	}
	sg, err := s.sagas.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return sg, sg.Decode(d)
}

// lockThenSend is the rest of a command that rewrites an existing image's
// blob through a worker: nothing once its saga has ended (a redelivery),
// else lock the image (a refusal abandons the saga) and send the work.
func (s *Service) lockThenSend(ctx context.Context, sg *saga.Saga, lock, send func() error) error {
	if sg.Status.Finished() {
		return nil // a redelivery after the saga ended
	}
	if err := lock(); err != nil {
		if isRefusal(err) {
			s.abandon(ctx, sg.ID, err.Error())
		}
		return err
	}
	return send()
}

// advance moves a saga from one phase to the next, with the next phase's
// deadline. saga.ErrWrongPhase means a duplicate delivery advanced it
// first, or it failed meanwhile.
func (s *Service) advance(ctx context.Context, sg *saga.Saga, from, to saga.Phase, note string) (*saga.Saga, error) {
	var d time.Duration
	if p := s.flowOf(sg.Kind).phase(to); p != nil {
		d = p.deadline
	}
	return s.sagas.Advance(ctx, sg.ID, from, to, d, note)
}

// send asks another service for a phase's work. Its ID is the saga step's,
// so a resend is a duplicate JetStream drops.
func (s *Service) send(ctx context.Context, cause envelope.Envelope, sagaID string, ph saga.Phase, imageID int64, service, verb string, cmd any) error {
	_, err := s.bus.Command(ctx, service, verb, cmd,
		bus.CausedBy(cause), bus.WithStep(sagaID, string(ph)), bus.WithSubject(idToken(imageID)))
	if err != nil {
		return fmt.Errorf("image %d: ask %s to %s: %w", imageID, service, verb, err)
	}
	return nil
}

// abandon fails a saga that never got going (nothing to undo but what its
// compensation handles).
func (s *Service) abandon(ctx context.Context, sagaID, reason string) {
	if _, err := s.sagas.Fail(ctx, sagaID, reason); err != nil {
		s.log.Warn("abandoning saga", "saga", sagaID, "err", err)
		return
	}
	if err := s.engine.Compensate(ctx, sagaID); err != nil {
		s.log.Warn("abandoning saga", "saga", sagaID, "err", err)
	}
}

// settle marks a failed saga failed and runs its compensations; another
// replica compensating it already is not an error.
func (s *Service) settle(ctx context.Context, sg *saga.Saga, reason string) error {
	if _, err := s.sagas.Fail(ctx, sg.ID, reason); err != nil && !errors.Is(err, saga.ErrNotRunning) {
		return err
	}
	if err := s.engine.Compensate(ctx, sg.ID); err != nil && !errors.Is(err, saga.ErrBusy) {
		return err
	}
	return nil
}

// expired is the reconciler's hook for a saga past its phase deadline:
// its flow fails it, in the words of the phase.
func (s *Service) expired(ctx context.Context, sg *saga.Saga) error {
	f := s.flowOf(sg.Kind)
	if f == nil || f.fail == nil {
		_, err := s.sagas.Expire(ctx, sg.ID)
		return err
	}
	d := roundDuration(sg.PhaseDuration())
	reason := fmt.Sprintf("%s did not finish within %s", f.what, d)
	if p := f.phase(sg.Phase); p != nil && p.expired != nil {
		reason = p.expired(sg, d)
	}
	return f.fail(ctx, sg, schemas.CodeDeadlineExceeded, reason, nil)
}

// resume is the reconciler's hook after a restart: the phase picks up
// what a crashed process left half done.
func (s *Service) resume(ctx context.Context, sg *saga.Saga) error {
	f := s.flowOf(sg.Kind)
	if f == nil {
		return nil
	}
	if p := f.phase(sg.Phase); p != nil && p.resume != nil {
		return p.resume(ctx, sg)
	}
	return nil
}

func roundDuration(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

// stepOpts are the options of an event a saga step publishes: caused by
// cause, or, with no message behind it (reconciler), in the saga.
func stepOpts(sagaID string, cause *envelope.Envelope, what string) []bus.PubOption {
	if cause != nil {
		return causedBy(*cause, what)
	}
	return inSaga(sagaID, what)
}

// decodeStep decodes an event (a malformed one is terminal) and the data
// of the saga it is about.
func decodeStep[E, D any](m *bus.Msg, sg *saga.Saga) (ev E, d D, err error) {
	if err := m.Decode(&ev); err != nil {
		return ev, d, bus.Terminal(err)
	}
	return ev, d, sg.Decode(&d)
}

// updateData changes the data of saga id, decoded as D, while the saga
// still runs in phase ph (saga.ErrNoChange otherwise: a late or duplicate
// report changes nothing). change edits the data, and may edit the saga
// (what it owns); the data is stored back with mergeData, so the fields D
// does not know stay.
func updateData[D any](ctx context.Context, sagas *saga.Store, id string, ph saga.Phase, change func(sg *saga.Saga, d *D)) (*saga.Saga, error) {
	return sagas.Update(ctx, id, func(sg *saga.Saga) error {
		if sg.Status != saga.StatusRunning || sg.Phase != ph {
			return saga.ErrNoChange
		}
		var d D
		if err := sg.Decode(&d); err != nil {
			return err
		}
		change(sg, &d)
		return mergeData(sg, d)
	})
}

// unclaimedReport is the handler of a report no saga claims: h gets the
// event's payload (a malformed one is terminal).
func unclaimedReport[E any](h func(ctx context.Context, ev E) error) eventHandler {
	return func(ctx context.Context, m *bus.Msg, _ *saga.Saga) error {
		var ev E
		if err := m.Decode(&ev); err != nil {
			return bus.Terminal(err)
		}
		return h(ctx, ev)
	}
}

// mergeData overlays v's fields on the saga's data, keeping the fields v
// does not know (a docker import's, when the import code updates it).
func mergeData(sg *saga.Saga, v any) error {
	fields := map[string]json.RawMessage{}
	if len(sg.Data) > 0 {
		if err := json.Unmarshal(sg.Data, &fields); err != nil {
			return fmt.Errorf("saga %s: decode data: %w", sg.ID, err)
		}
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	over := map[string]json.RawMessage{}
	if err := json.Unmarshal(b, &over); err != nil {
		return err
	}
	for k, raw := range over {
		fields[k] = raw
	}
	return sg.SetData(fields)
}
