package run

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultDrain is how long Wait lets components stop after the group is
// cancelled.
const DefaultDrain = 30 * time.Second

// Group runs long-running components (a bus consumer, a micro service, an
// HTTP server…) side by side. The first component to fail cancels the
// context of all the others; Wait then gives them the drain timeout to
// return. A component returning nil just ends; the others keep running.
//
// The zero Group is usable: it derives from context.Background and drains
// for DefaultDrain. Use NewGroup to tie it to a parent context (e.g. the one
// Main cancels on SIGTERM).
type Group struct {
	init    sync.Once
	ctx     context.Context
	cancel  context.CancelFunc
	drain   time.Duration
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	running map[string]int
}

// GroupOption configures a Group.
type GroupOption func(*Group)

// WithDrain sets how long Wait waits for components once the group is
// cancelled.
func WithDrain(d time.Duration) GroupOption { return func(g *Group) { g.drain = d } }

// NewGroup returns a group whose components stop when ctx is done.
func NewGroup(ctx context.Context, opts ...GroupOption) *Group {
	g := &Group{drain: DefaultDrain}
	for _, o := range opts {
		o(g)
	}
	g.start(ctx)
	return g
}

func (g *Group) start(parent context.Context) {
	g.init.Do(func() {
		g.ctx, g.cancel = context.WithCancel(parent)
		g.running = map[string]int{}
		if g.drain <= 0 {
			g.drain = DefaultDrain
		}
	})
}

// Context is the context the components get; it is done once the group
// stops.
func (g *Group) Context() context.Context {
	g.start(context.Background())
	return g.ctx
}

// Go starts fn as the component name.
func (g *Group) Go(name string, fn func(ctx context.Context) error) {
	g.start(context.Background())
	g.mu.Lock()
	g.running[name]++
	g.mu.Unlock()
	g.wg.Go(func() {
		err := fn(g.ctx)
		g.mu.Lock()
		defer g.mu.Unlock()
		if g.running[name]--; g.running[name] == 0 {
			delete(g.running, name)
		}
		// Errors caused by the group stopping are the expected way out.
		if err == nil || (g.ctx.Err() != nil && errors.Is(err, context.Canceled)) {
			return
		}
		if g.err == nil {
			g.err = fmt.Errorf("%s: %w", name, err)
			slog.Error("component failed, stopping the others", "component", name, "error", err)
		}
		g.cancel()
	})
}

// Stop cancels the group's context, asking every component to return.
func (g *Group) Stop() {
	g.start(context.Background())
	g.cancel()
}

// Wait blocks until every component returned, or, once the group is
// cancelled, until the drain timeout passed. It returns the first
// component error (prefixed with its name), or an error naming the
// components that did not stop in time.
func (g *Group) Wait() error {
	g.start(context.Background())
	done := make(chan struct{})
	go func() {
		g.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-g.ctx.Done():
		t := time.NewTimer(g.drain)
		defer t.Stop()
		select {
		case <-done:
		case <-t.C:
			g.mu.Lock()
			names := make([]string, 0, len(g.running))
			for n := range g.running {
				names = append(names, n)
			}
			g.mu.Unlock()
			slices.Sort(names)
			err := fmt.Errorf("components did not stop within %s: %s", g.drain, strings.Join(names, ", "))
			return errors.Join(g.firstErr(), err)
		}
	}
	g.cancel()
	return g.firstErr()
}

func (g *Group) firstErr() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
