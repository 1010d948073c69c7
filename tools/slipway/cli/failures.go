package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// failedError is a command a service refused, or a workflow that failed:
// its message and its code (schemas/errors.json).
type failedError struct{ msg, code string }

func (e *failedError) Error() string {
	if e.code == "" {
		return e.msg
	}
	return fmt.Sprintf("%s (%s)", e.msg, e.code)
}

// failureOf reads a failed event: the error of a final failure, or ok
// false for an attempt that will be retried (next_attempt_at), which is no
// answer yet.
func failureOf(ev event) (f schemas.Failure, final bool, err error) {
	if err := ev.decode(&f); err != nil {
		return f, true, err
	}
	return f, f.NextAttemptAt == "", nil
}

// callFailure is the error a refused bus.Call reports: the service's own
// message, without the call's prefix, and its code.
func callFailure(err error) error {
	var ce *bus.CallError
	if errors.As(err, &ce) {
		return &failedError{msg: ce.Message, code: ce.Code}
	}
	return err
}

// attemptLine says that an attempt failed and when the next comes.
func attemptLine(f schemas.Failure) string {
	next := f.NextAttemptAt
	if t, err := time.Parse(time.RFC3339, next); err == nil {
		next = t.Local().Format("15:04:05")
	}
	of := ""
	if f.MaxAttempts > 0 {
		of = fmt.Sprintf(" of %d", f.MaxAttempts)
	}
	return fmt.Sprintf("attempt %d%s failed (%s): %s; next attempt at %s", f.Attempt, of, f.Code, f.Error, next)
}

// finalFailureWait bounds the wait for the catalog's failed event, which
// it publishes right after the image's state-changed to ERROR.
const finalFailureWait = 3 * time.Second

// finalCode waits briefly for the catalog's final failed event about image
// id and returns its code; "" when none comes.
func finalCode(ctx context.Context, w *watcher, id string) string {
	ctx, cancel := context.WithTimeout(ctx, finalFailureWait)
	defer cancel()
	for {
		select {
		case <-ctx.Done():
			return ""
		case m := <-w.events():
			ev, ok := w.parse(m)
			if !ok || ev.ID != id || ev.Service != schemas.ServiceCatalog || ev.Name != schemas.EventCatalogFailed {
				continue
			}
			if f, final, err := failureOf(ev); err == nil && final {
				return f.Code
			}
		}
	}
}
