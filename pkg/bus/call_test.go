package bus

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/schemas"
)

// TestCall: the answer caused by the command is returned, other events of
// the service are ignored, a failed event is a CallError, and no answer
// ends with the context.
func TestCall(t *testing.T) {
	srv := startServer(t)
	lock := newBus(t, srv, "catalog") // image-use answered by image-used: a lock
	client := newBus(t, srv, "client")
	ctx := testCtx(t)
	consume(t, lock, func(ctx context.Context, m *Msg) error {
		var req struct{ Name string }
		if err := m.Decode(&req); err != nil {
			return Terminal(err)
		}
		// Noise first: an accepted event name, caused by something else.
		_, err := lock.Event(ctx, "image-used", "x", map[string]string{"name": "noise"})
		if err != nil {
			return err
		}
		switch req.Name {
		case "busy":
			// An attempt that will be retried is not the answer; the final failure is.
			_, err = lock.Event(ctx, "failed", "x", map[string]any{"code": "unavailable", "error": "try later",
				"retryable": true, "attempt": 1, "next_attempt_at": time.Now().Add(time.Second).Format(time.RFC3339)}, CausedBy(m.Envelope))
			if err == nil {
				_, err = lock.Event(ctx, "failed", "x", map[string]any{"code": "image-locked", "error": "x is busy", "retryable": true}, CausedBy(m.Envelope))
			}
		case "silent":
		default:
			_, err = lock.Event(ctx, "image-used", "x", map[string]string{"name": req.Name}, CausedBy(m.Envelope))
		}
		return err
	})

	m, err := client.Call(ctx, "catalog", "image-use", map[string]string{"Name": "a"}, []string{"image-used"})
	if err != nil || !strings.Contains(string(m.Data), `"a"`) || m.Name != "image-used" {
		t.Fatalf("call: %v, %+v", err, m)
	}
	_, err = client.Call(ctx, "catalog", "image-use", map[string]string{"Name": "busy"}, []string{"image-used"})
	var ce *CallError
	if !errors.As(err, &ce) || ce.Message != "x is busy" || !IsCallError(err) {
		t.Fatalf("refusal: %v", err)
	}
	if code := CodeOf(fmt.Errorf("wrapped: %w", err)); code != schemas.CodeImageLocked {
		t.Errorf("CodeOf(refusal) = %q, want the event's code", code)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := client.Call(short, "catalog", "image-use", map[string]string{"Name": "silent"}, []string{"image-used"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no answer: %v", err)
	}
}

// TestCodeOf: a code given where an error arises survives wrapping, the
// outermost wins, a non-retryable code is terminal, and errors with no code
// get the code of their kind.
func TestCodeOf(t *testing.T) {
	dns := WithCode(schemas.CodeHostNotFound, errors.New("lookup x.invalid: no such host"))
	if !IsTerminal(fmt.Errorf("fetch: %w", dns)) {
		t.Error("host-not-found is not terminal")
	}
	busy := WithCode(schemas.CodeUnavailable, errors.New("503"))
	if IsTerminal(busy) {
		t.Error("unavailable is terminal")
	}
	outer := WithCode(schemas.CodeInvalidInput, fmt.Errorf("x: %w", busy))
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("fetch: %w", dns), schemas.CodeHostNotFound},
		{outer, schemas.CodeInvalidInput},
		{fmt.Errorf("decode: %w", schemas.ErrInvalid), schemas.CodeInvalidCommand},
		{&DeadlineError{}, schemas.CodeDeadlineExceeded},
		{Terminal(errors.New("VM 4 is RUNNING")), schemas.CodeRefused},
		{errors.New("boom"), schemas.CodeInternal},
	} {
		if got := CodeOf(c.err); got != c.want {
			t.Errorf("CodeOf(%v) = %q, want %q", c.err, got, c.want)
		}
	}
	f := NewFailure(fmt.Errorf("fetch: %w", dns))
	if f.Code != schemas.CodeHostNotFound || f.Retryable || !strings.Contains(f.Error, "no such host") {
		t.Errorf("NewFailure = %+v", f)
	}
	if err := schemas.ValidateValue(schemas.KindEvent, schemas.ServiceConverter, schemas.EventConverterFailed, f); err != nil {
		t.Errorf("NewFailure does not fit the schema: %v", err)
	}
	if WithCode(schemas.CodeInternal, nil) != nil {
		t.Error("WithCode(nil) is not nil")
	}
}

func TestCodeOr(t *testing.T) {
	if got := CodeOr(Terminal(errors.New("VM 4 is RUNNING")), schemas.CodeConflict); got != schemas.CodeConflict {
		t.Errorf("a refusal without a code: %q", got)
	}
	if got := CodeOr(WithCode(schemas.CodeNotFound, errors.New("no VM 4")), schemas.CodeConflict); got != schemas.CodeNotFound {
		t.Errorf("a refusal with its code: %q", got)
	}
}
