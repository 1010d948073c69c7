package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/tools/slipway/console"
	"github.com/slipway/slipway/tools/slipway/up"
)

// newConsoleCmd serves the web console on its own: compose's console
// container (`slipway up` serves it itself).
func newConsoleCmd(g *globals) *cobra.Command {
	var (
		addr, wsURL, s3URL, caFile string
		healthcheck                bool
	)
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the web console (static files; browsers log in to NATS over WebSocket themselves)",
		Long: `Serve Slipway's web console on --addr: the page, embedded in this binary, and
/config.json, which points browsers at NATS's WebSocket listener
(--nats-ws-url, as the browser reaches it) and at S3 (--s3-url, where the
page sends the parts of a desktop upload: the endpoint the catalog's
presigned URLs name, SLIPWAY_S3_PUBLIC_ENDPOINT). Browsers log in there with the
user's own credentials file; this server never sees a credential. With --ca
the CA's certificate is offered at /ca.crt, for browsers to trust a wss://
listener. --healthcheck asks a running console for /config.json and exits 0
when it answers (compose's healthcheck).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if healthcheck {
				return probeConsole(cmd.Context(), addr)
			}
			cfg := console.Config{NATSWebSocketURL: wsURL, S3URL: s3URL, Prefix: g.prefix}
			if caFile != "" {
				ca, err := os.ReadFile(caFile)
				if err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("--ca: %w", err)}
				}
				cfg.CACert = ca
			}
			h, err := console.Handler(cfg)
			if err != nil {
				return &ExitError{Code: 2, Err: err}
			}
			return serveConsole(cmd.Context(), addr, h, g.io.out)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&addr, "addr", up.DefaultConsoleHTTPAddr, "address to serve the console on (plain HTTP: keep it on loopback or behind a TLS proxy)")
	fl.StringVar(&wsURL, "nats-ws-url", env("SLIPWAY_NATS_WS_URL", "ws://"+up.DefaultWebSocketAddr), "NATS's WebSocket listener as browsers reach it, ws:// or wss:// ($SLIPWAY_NATS_WS_URL)")
	fl.StringVar(&s3URL, "s3-url", env("SLIPWAY_S3_PUBLIC_URL", ""), "S3 as browsers reach it, http(s)://host:port, for desktop uploads; empty: the page cannot upload ($SLIPWAY_S3_PUBLIC_URL)")
	fl.StringVar(&caFile, "ca", "", "offer this CA certificate at /ca.crt (the CA of a wss:// listener)")
	fl.BoolVar(&healthcheck, "healthcheck", false, "probe the console on --addr and exit")
	return cmd
}

// serveConsole serves h on addr until ctx ends.
func serveConsole(ctx context.Context, addr string, h http.Handler, out interface{ Write([]byte) (int, error) }) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	fmt.Fprintf(out, "console   http://%s/\n", ln.Addr())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(shutdown); err != nil {
			return err
		}
		if err := <-done; !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	}
}

// probeConsole asks the console on addr for its configuration.
func probeConsole(ctx context.Context, addr string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/config.json", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("console on %s: %w", addr, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("console on %s: %s", addr, resp.Status)
	}
	return nil
}
