package testenv

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// Recorder keeps every message published on some subjects, in order, so a
// test can wait for the one it expects and list what else went by.
type Recorder struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	more chan struct{} // closed and replaced on every message
}

// RecordTimeout bounds Recorder.Wait.
const RecordTimeout = 20 * time.Second

// Record subscribes to subjects on nc until the test ends. check, when not
// nil, sees each message first (tests validate what a service publishes
// against its schema there).
func Record(t testing.TB, nc *nats.Conn, check func(*nats.Msg), subjects ...string) *Recorder {
	t.Helper()
	r := &Recorder{more: make(chan struct{})}
	for _, subj := range subjects {
		sub, err := nc.Subscribe(subj, func(m *nats.Msg) {
			if check != nil {
				check(m)
			}
			r.mu.Lock()
			r.msgs = append(r.msgs, m)
			close(r.more)
			r.more = make(chan struct{})
			r.mu.Unlock()
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// Wait returns the first message, recorded so far or to come, that match
// accepts; it fails the test after RecordTimeout, listing what was seen.
func (r *Recorder) Wait(t testing.TB, what string, match func(*nats.Msg) bool) *nats.Msg {
	t.Helper()
	deadline := time.After(RecordTimeout)
	for seen := 0; ; {
		r.mu.Lock()
		msgs, more := r.msgs, r.more
		r.mu.Unlock()
		for ; seen < len(msgs); seen++ {
			if match(msgs[seen]) {
				return msgs[seen]
			}
		}
		select {
		case <-more:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; got:\n%s", what, r.Dump())
		}
	}
}

// All returns the messages recorded so far that match accepts.
func (r *Recorder) All(match func(*nats.Msg) bool) []*nats.Msg {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*nats.Msg
	for _, m := range r.msgs {
		if match(m) {
			out = append(out, m)
		}
	}
	return out
}

// Dump lists the recorded messages, one "subject data" line each.
func (r *Recorder) Dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var sb strings.Builder
	for _, m := range r.msgs {
		fmt.Fprintf(&sb, "  %s %s\n", m.Subject, m.Data)
	}
	return sb.String()
}
