package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// HealthAddrEnv names the variable with the health endpoint's listen
// address (e.g. ":8081"); empty turns the endpoint off.
const HealthAddrEnv = "SLIPWAY_HEALTH_ADDR"

// Health collects the state of a process's components. The zero value is
// ready to use; with no component reported it is healthy.
type Health struct {
	mu    sync.RWMutex
	state map[string]error
}

// Set records a component's state: nil is healthy, an error is not.
func (h *Health) Set(component string, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.state == nil {
		h.state = map[string]error{}
	}
	h.state[component] = err
}

// Check returns nil when every component is healthy, or an error listing
// the failing ones.
func (h *Health) Check() error {
	h.mu.RLock()
	defer h.mu.RUnlock()
	var errs []error
	for name, err := range h.state {
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

type healthReport struct {
	Status     string            `json:"status"`
	Components map[string]string `json:"components"`
}

// Handler serves the state as JSON: 200 {"status":"ok","components":{…}}
// when all components are healthy, 503 {"status":"unavailable",…} with the
// failing components' errors otherwise.
func (h *Health) Handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		rep := healthReport{Status: "ok", Components: map[string]string{}}
		code := http.StatusOK
		h.mu.RLock()
		for name, err := range h.state {
			if err != nil {
				rep.Components[name] = err.Error()
				rep.Status, code = "unavailable", http.StatusServiceUnavailable
			} else {
				rep.Components[name] = "ok"
			}
		}
		h.mu.RUnlock()
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(rep)
	})
}

// ServeHealth serves h on addr until ctx is done: /healthz and /readyz
// report the components, /livez only says the process answers. An empty
// addr turns it off (it returns nil at once).
func ServeHealth(ctx context.Context, addr string, h *Health) error {
	if addr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	return serveHealth(ctx, ln, h)
}

func serveHealth(ctx context.Context, ln net.Listener, h *Health) error {
	mux := http.NewServeMux()
	mux.Handle("GET /healthz", h.Handler())
	mux.Handle("GET /readyz", h.Handler())
	mux.HandleFunc("GET /livez", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("health endpoint: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("health endpoint shutdown: %w", err)
	}
	return nil
}
