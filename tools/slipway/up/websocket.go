package up

import (
	"fmt"
	"net"
	"strconv"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultWebSocketAddr is where `slipway up` listens for NATS over
// WebSocket (the console's browsers) unless told otherwise: loopback only.
const DefaultWebSocketAddr = "127.0.0.1:4223"

// DefaultConsoleHTTPAddr is where `slipway up` serves the web console.
const DefaultConsoleHTTPAddr = "127.0.0.1:4280"

// webSocket makes the embedded server listen for NATS over WebSocket on
// cfg.WebSocketAddr ("" for none; port -1 or 0 for any free one). Clients
// authenticate there exactly as over TCP: the operator's JWTs, the same
// permissions, no override of the server's authentication. Whenever NATS
// speaks TLS the listener does too (wss://), with the same certificate;
// otherwise it is plain ws://, which the server allows only because the
// address is the operator's choice (loopback by default).
func (s *Stack) webSocket(opts *server.Options) error {
	if s.cfg.WebSocketAddr == "" {
		return nil
	}
	host, port, err := splitListenAddr(s.cfg.WebSocketAddr)
	if err != nil {
		return fmt.Errorf("nats websocket: %w", err)
	}
	opts.Websocket.Host = host
	opts.Websocket.Port = port
	// Browsers compress poorly through NATS's framing anyway; off keeps
	// the server's CPU for the services.
	opts.Websocket.Compression = false
	if opts.TLSConfig != nil {
		opts.Websocket.TLSConfig = opts.TLSConfig.Clone()
		return nil
	}
	opts.Websocket.NoTLS = true
	return nil
}

// splitListenAddr splits host:port, where port may be -1 or 0 (any free
// port, which nats-server spells -1).
func splitListenAddr(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("address %q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("address %q: port %q is not a number from 0 to 65535 (or -1 for any free port)", addr, p)
	}
	if port == 0 {
		port = -1
	}
	return host, port, nil
}
