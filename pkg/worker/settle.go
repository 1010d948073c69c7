package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// Settlement is how a service publishes and classifies one job's outcome;
// Settle does the rest. Only Failed is needed for a job that can fail.
type Settlement struct {
	// Succeeded publishes the success event; its error is retried (the
	// redelivery redoes the job and publishes under the same ce-id).
	Succeeded func(ctx context.Context) error
	// Terminal tells whether retrying err cannot help; nil means
	// bus.IsTerminal.
	Terminal func(err error) bool
	// Expired makes the final error of a job that ran past its deadline
	// out of its error; nil means fmt.Errorf("%w: %w", expired, err).
	Expired func(err, expired error) error
	// Cleanup, when set, runs after every failure before it is reported:
	// final tells whether this is the command's last attempt (a terminal
	// failure or the last delivery).
	Cleanup func(err error, final bool)
	// Failed publishes the failed event f reporting err, under the event
	// ID step FailedStep(step, f): for a final failure, and for every failed
	// attempt that will be retried (f.NextAttemptAt set), so that watchers
	// see each attempt, its reason and when the next one comes. f has the
	// code, the message, retryable (false when terminal), the command and
	// the attempt; the service adds what it knows (image, phase).
	Failed func(ctx context.Context, err error, f schemas.Failure)
	// TerminateLast ends the last delivery's failure with bus.Terminal as
	// well, for a worker whose failed event is the whole report, instead
	// of leaving it to the dead-letter stream.
	TerminateLast bool
	// Attrs are added to the log line of a failure that will be retried.
	Attrs []any
}

// ErrInvalid marks a command that is wrong as sent: it does not match its
// schema or does not decode. Retrying it cannot help.
var ErrInvalid = errors.New("invalid command")

// Decode validates m's payload against the schema of service's command
// and decodes it into v; a failure wraps ErrInvalid.
func Decode(service, command string, m *bus.Msg, v any) error {
	if err := schemas.Validate(schemas.KindCommand, service, command, m.Data); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := m.Decode(v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// Answer returns a Settlement.Succeeded that publishes the job's result:
// event about the subject token id, with data, caused by command m and
// under the event ID step named after the event in m's correlation, so
// that a redelivery, which redoes the job, publishes under the same ce-id.
func (w *Worker) Answer(m *bus.Msg, event, id string, data any) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if _, err := w.bus.Event(ctx, event, id, data,
			bus.CausedBy(m.Envelope), bus.WithStep(m.Envelope.CorrelationID, event)); err != nil {
			return fmt.Errorf("publish %s: %w", event, err)
		}
		return nil
	}
}

// Settle turns the outcome err of command m's job into the message's fate,
// the way every worker does: nil publishes the success event; a terminal
// failure, or any failure on the last delivery (MaxDeliver), publishes
// one failed event and ends the message (bus.Terminal when terminal, else
// the error, for the dead-letter stream); any other failure publishes a
// failed event for the attempt (retryable, with when the next comes) and
// is retried after bus.DefaultBackoff. A job past its deadline
// (bus.JobExpired) is final: its ctx has ended, so it is reported through
// context.WithoutCancel(ctx).
func (w *Worker) Settle(ctx context.Context, m *bus.Msg, err error, s Settlement) error {
	if err == nil {
		if s.Succeeded != nil {
			return s.Succeeded(ctx)
		}
		return nil
	}
	isTerminal := s.Terminal
	if isTerminal == nil {
		isTerminal = bus.IsTerminal
	}
	terminal := isTerminal(err)
	expired := bus.JobExpired(ctx)
	if expired != nil {
		// Running out of time again would not help; ctx has ended, so the
		// failure is reported through one that has not.
		ctx = context.WithoutCancel(ctx)
		if s.Expired != nil {
			err = s.Expired(err, expired)
		} else {
			err = fmt.Errorf("%w: %w", expired, err)
		}
		terminal = true
	}
	last := m.Delivered >= uint64(w.cfg.MaxDeliver)
	final := terminal || last
	if s.Cleanup != nil {
		s.Cleanup(err, final)
	}
	f := bus.NewFailure(err)
	f.Retryable, f.Command = !terminal, m.Subject
	f.Attempt, f.MaxAttempts = int64(max(m.Delivered, 1)), int64(w.cfg.MaxDeliver)
	if expired != nil {
		f.Code = schemas.CodeDeadlineExceeded
	}
	if !final && ctx.Err() != nil {
		// The worker is stopping: the job was abandoned, not failed, and
		// comes back after the ack wait.
		w.log.Warn("job abandoned, will be redelivered", append(append([]any{"command", m.Subject}, s.Attrs...),
			"delivered", m.Delivered, "err", err)...)
		return err
	}
	if !final {
		// The consumer redelivers after bus.DefaultBackoff (Run sets no other).
		f.NextAttemptAt = time.Now().Add(bus.DefaultBackoff(m.Delivered)).UTC().Format(time.RFC3339)
		w.log.Warn("job failed, will retry", append(append([]any{"command", m.Subject}, s.Attrs...),
			"delivered", m.Delivered, "code", f.Code, "next_attempt_at", f.NextAttemptAt, "err", err)...)
		if s.Failed != nil {
			s.Failed(ctx, err, f)
		}
		return err
	}
	if s.Failed != nil {
		s.Failed(ctx, err, f)
	}
	if terminal || s.TerminateLast {
		return bus.Terminal(err)
	}
	return err // the last delivery: the dead-letter stream gets it
}

// FailedStep is the step, in the event ID, of the failed event f: step
// for a final failure, step/attempt-<n> for attempt n that will be
// retried, so that each attempt is its own event while a redelivered
// final report is still dropped as a duplicate.
func FailedStep(step string, f schemas.Failure) string {
	if f.NextAttemptAt == "" {
		return step
	}
	return step + "/attempt-" + strconv.FormatInt(f.Attempt, 10)
}

// IsAttempt reports whether f is a failed attempt that will be retried,
// not the command's final failure.
func IsAttempt(f schemas.Failure) bool { return f.NextAttemptAt != "" }
