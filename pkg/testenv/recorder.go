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
// against its schema there). Messages are kept in the order the server
// sent them, across subjects: every subscription feeds one channel from
// the connection's read loop, and one goroutine records them.
func Record(t testing.TB, nc *nats.Conn, check func(*nats.Msg), subjects ...string) *Recorder {
	t.Helper()
	r := &Recorder{more: make(chan struct{})}
	in := make(chan *nats.Msg, recordBuffer)
	done := make(chan struct{})
	var subs []*nats.Subscription
	stop := func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
		close(done)
	}
	for _, subj := range subjects {
		sub, err := nc.ChanSubscribe(subj, in)
		if err != nil {
			stop()
			t.Fatal(err)
		}
		subs = append(subs, sub)
	}
	go func() {
		for {
			select {
			case m := <-in:
				r.add(m, check)
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(stop)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return r
}

// recordBuffer is how many messages may wait for the recording goroutine:
// the read loop drops a message a full channel cannot take, so it is far
// more than any test publishes in a burst.
const recordBuffer = 1 << 16

func (r *Recorder) add(m *nats.Msg, check func(*nats.Msg)) {
	if check != nil {
		check(m)
	}
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	close(r.more)
	r.more = make(chan struct{})
	r.mu.Unlock()
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
