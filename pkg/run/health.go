package run

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// HealthAddrEnv names the variable with the health endpoint's listen
// address: "host:port" (e.g. ":8081") or "unix:PATH" for a Unix socket
// (what docker-compose.yml uses: with host networking every container
// shares the ports, not the files); empty turns the endpoint off.
const HealthAddrEnv = "SLIPWAY_HEALTH_ADDR"

// unixPrefix marks a health address that is a Unix socket's path.
const unixPrefix = "unix:"

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

// ServeHealth serves h on addr (see HealthAddrEnv) until ctx is done:
// /healthz and /readyz report the components, /livez only says the process
// answers. An empty addr turns it off (it returns nil at once).
func ServeHealth(ctx context.Context, addr string, h *Health) error {
	if addr == "" {
		return nil
	}
	ln, err := listenHealth(addr)
	if err != nil {
		return fmt.Errorf("health endpoint: %w", err)
	}
	return serveHealth(ctx, ln, h)
}

func listenHealth(addr string) (net.Listener, error) {
	path, ok := strings.CutPrefix(addr, unixPrefix)
	if !ok {
		return net.Listen("tcp", addr)
	}
	if path == "" {
		return nil, fmt.Errorf("%q: no socket path after %q", addr, unixPrefix)
	}
	// A process that was killed leaves its socket behind, and a restarted
	// container keeps its files: the old socket would block the address.
	// Only a socket is removed, never another kind of file.
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if err := os.Remove(path); err != nil {
			return nil, err
		}
	}
	return net.Listen("unix", path)
}

// CheckHealth asks the health endpoint listening on addr (as written in
// SLIPWAY_HEALTH_ADDR; a TCP address without a host, or with an
// unspecified one, is reached on loopback) for /healthz. It returns nil
// when the answer is 200, and an error with the answer otherwise.
func CheckHealth(ctx context.Context, addr string) error {
	if addr == "" {
		return fmt.Errorf("%s is empty: the health endpoint is off", HealthAddrEnv)
	}
	tr := &http.Transport{DisableKeepAlives: true}
	target := "http://health"
	if path, ok := strings.CutPrefix(addr, unixPrefix); ok {
		var d net.Dialer
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", path)
		}
	} else {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("health address %q: %w", addr, err)
		}
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			host = "127.0.0.1"
		}
		target = "http://" + net.JoinHostPort(host, port)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return fmt.Errorf("health endpoint %s: %w", addr, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health endpoint %s: %s: %s", addr, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
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
