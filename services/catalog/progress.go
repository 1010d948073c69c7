package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// The catalog republishes the progress of the workers its sagas wait for
// under the image, as catalog.image-progress.<id>, so the CLI and any
// other watcher follow one subject whatever the saga's steps are. Nothing
// here knows a saga kind or a worker: a progress event belongs to the
// step whose command caused it, and a saga step's command ID is
// envelope.StepID(saga, step) (docs/design.md, "Envelope").

// EvtImageProgress is the event the catalog republishes progress as.
const EvtImageProgress = schemas.EventCatalogImageProgress

// workerProgress is the name of every worker's progress event, whose
// payload is the one shape schemas.Progress.
const workerProgress = "progress"

// progressQueue is the queue group of the catalog's replicas: one of them
// republishes each progress event.
const progressQueue = "catalog-progress"

// republishProgress subscribes to the progress events of every service
// and republishes, under the image, those a running saga's current step
// caused, until stop. Progress is a courtesy: the workers throttle it (at
// most one event a second per job), it is not stored for the catalog, and
// an event lost or refused is only logged.
func (s *Service) republishProgress(ctx context.Context) (stop func(), err error) {
	subject := s.bus.EventSubject("*", workerProgress, "*")
	sub, err := s.bus.Conn().QueueSubscribe(subject, progressQueue, func(m *nats.Msg) {
		if err := s.onProgress(ctx, m); err != nil {
			s.log.Debug("progress not republished", "subject", m.Subject, "err", err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	if err := s.bus.Conn().FlushTimeout(5 * time.Second); err != nil {
		_ = sub.Unsubscribe()
		return nil, fmt.Errorf("subscribe to %s: %w", subject, err)
	}
	return func() { _ = sub.Drain() }, nil
}

// onProgress republishes one worker progress event, or says why not.
func (s *Service) onProgress(ctx context.Context, m *nats.Msg) error {
	service, id, ok := s.progressSubject(m.Subject)
	if !ok {
		return fmt.Errorf("not a worker's progress subject")
	}
	env, err := envelope.FromHeader(m.Header)
	if err != nil {
		return err
	}
	step, err := s.currentStep(ctx, env, id)
	if err != nil {
		return err
	}
	// What a worker sends is checked against its schema before anything
	// of it is republished.
	if err := schemas.Validate(schemas.KindEvent, service, workerProgress, m.Data); err != nil {
		return err
	}
	var p schemas.Progress
	if err := json.Unmarshal(m.Data, &p); err != nil {
		return err
	}
	if p.ImageID == nil || idToken(*p.ImageID) != id {
		return fmt.Errorf("progress %s on the subject of %s", m.Data, id)
	}
	ev := schemas.ImageProgress{ID: *p.ImageID, Step: step, Phase: p.Phase, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal}
	_, err = s.bus.Event(ctx, EvtImageProgress, id, ev, causedBy(env, EvtImageProgress)...)
	return err
}

// progressSubject splits "<prefix>.evt.<service>.progress.<id>" into the
// publishing service and the id token; the catalog's own are not a
// worker's.
func (s *Service) progressSubject(subject string) (service, id string, ok bool) {
	rest, ok := strings.CutPrefix(subject, s.bus.Prefix()+".evt.")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 || parts[1] != workerProgress || parts[0] == ServiceName {
		return "", "", false
	}
	return parts[0], parts[2], true
}

// currentStep is the step of the running saga about image id whose
// command caused a progress event with envelope env: the saga is the
// event's correlation, and the step's command ID is its causation.
// Progress of an earlier step arriving late, of another image or of a
// command no saga sent is refused.
func (s *Service) currentStep(ctx context.Context, env envelope.Envelope, id string) (string, error) {
	if env.CorrelationID == "" || env.CausationID == "" {
		return "", fmt.Errorf("progress without a saga (correlation %q, causation %q)", env.CorrelationID, env.CausationID)
	}
	sg, err := s.sagas.Get(ctx, env.CorrelationID)
	if err != nil {
		return "", err
	}
	step := string(sg.Phase)
	switch {
	case sg.Status != saga.StatusRunning:
		return "", fmt.Errorf("saga %s is %s", sg.ID, sg.Status)
	case sg.Subject != id:
		return "", fmt.Errorf("saga %s is about %q, not %s", sg.ID, sg.Subject, id)
	case env.CausationID != envelope.StepID(sg.ID, step):
		return "", fmt.Errorf("saga %s is at step %s, which did not cause %s", sg.ID, step, env.CausationID)
	}
	return step, nil
}
