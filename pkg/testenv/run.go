package testenv

import (
	"context"
	"sync"
	"testing"
	"time"
)

// ReadyTimeout bounds Start's wait for a service to get ready.
var ReadyTimeout = time.Minute

// Run runs run, a service's Run, in the background with a context derived
// from ctx, until the test ends or stop is called. stop cancels that
// context and waits for run to return; an error it returned fails the test,
// naming name. stop is idempotent.
func Run(t testing.TB, ctx context.Context, name string, run func(context.Context) error) (stop func()) {
	stop, _ = goRun(t, ctx, name, run)
	return stop
}

// Start is Run for a service that says when it serves: it returns once
// ready is closed, and fails the test when run returns first or ready is
// not closed within ReadyTimeout.
func Start(t testing.TB, ctx context.Context, name string, run func(context.Context) error, ready <-chan struct{}) (stop func()) {
	t.Helper()
	stop, exited := goRun(t, ctx, name, run)
	select {
	case <-ready:
	case <-exited:
		stop() // reports what run returned
		t.Fatalf("%s stopped before it was ready", name)
	case <-time.After(ReadyTimeout):
		t.Fatalf("%s not ready after %s", name, ReadyTimeout)
	}
	return stop
}

// goRun starts run and returns its stop, registered as a cleanup of t,
// and a channel closed when run has returned.
func goRun(t testing.TB, ctx context.Context, name string, run func(context.Context) error) (stop func(), exited <-chan struct{}) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	var err error
	go func() {
		defer close(done)
		err = run(ctx)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			<-done
			if err != nil {
				t.Errorf("%s: %v", name, err)
			}
		})
	}
	t.Cleanup(stop)
	return stop, done
}
