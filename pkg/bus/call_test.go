package bus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestCall: the answer caused by the command is returned, other events of
// the service are ignored, a failed event is a CallError, and no answer
// ends with the context.
func TestCall(t *testing.T) {
	srv := startServer(t)
	lock := newBus(t, srv, "catalog") // image-use answered by image-used: a lock
	client := newBus(t, srv, "client")
	ctx := testCtx(t)
	cons, err := lock.ConsumeCommands(ctx, func(ctx context.Context, m *Msg) error {
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
			_, err = lock.Event(ctx, "failed", "x", map[string]string{"error": "x is busy"}, CausedBy(m.Envelope))
		case "silent":
		default:
			_, err = lock.Event(ctx, "image-used", "x", map[string]string{"name": req.Name}, CausedBy(m.Envelope))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer cons.Stop()

	m, err := client.Call(ctx, "catalog", "image-use", map[string]string{"Name": "a"}, []string{"image-used"})
	if err != nil || !strings.Contains(string(m.Data), `"a"`) || m.Name != "image-used" {
		t.Fatalf("call: %v, %+v", err, m)
	}
	_, err = client.Call(ctx, "catalog", "image-use", map[string]string{"Name": "busy"}, []string{"image-used"})
	var ce *CallError
	if !errors.As(err, &ce) || ce.Message != "x is busy" || !IsCallError(err) {
		t.Fatalf("refusal: %v", err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if _, err := client.Call(short, "catalog", "image-use", map[string]string{"Name": "silent"}, []string{"image-used"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("no answer: %v", err)
	}
}
