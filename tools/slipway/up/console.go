package up

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/slipway/slipway/tools/slipway/console"
)

// serveConsole serves the web console on cfg.ConsoleHTTPAddr: the
// embedded static files and /config.json, which points the browser at
// NATS's WebSocket listener. The browser logs in to NATS there with the
// user's own credentials; this server never sees them.
func (s *Stack) serveConsole() error {
	if s.cfg.ConsoleHTTPAddr == "" {
		return nil
	}
	if s.WebSocketURL == "" {
		return errors.New("console: it needs NATS's WebSocket listener (--websocket-addr)")
	}
	cfg := console.Config{NATSWebSocketURL: s.WebSocketURL, Prefix: s.Prefix}
	// The catalog names this endpoint in the part URLs it presigns.
	if u, err := s.S3.EndpointURL(); err == nil {
		cfg.S3URL = u
	}
	if s.ca != nil {
		cfg.CACert = s.ca.CertPEM()
	}
	h, err := console.Handler(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", s.cfg.ConsoleHTTPAddr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	s.consoleHTTP = srv
	s.ConsoleURL = "http://" + ln.Addr().String() + "/"
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("console http server", "err", err)
		}
	}()
	return nil
}
