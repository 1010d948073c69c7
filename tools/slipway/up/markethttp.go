package up

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/netguard"
	marketlxc "github.com/slipway/slipway/services/market-lxc"
)

// MarketPublicRootDir is the public root's name in the data directory
// (market-lxc's, for the CLI, which imports no service).
const MarketPublicRootDir = marketlxc.PublicRootDir

// PublicRoot is the directory market-lxc publishes http marketplaces
// below: SLIPWAY_MARKET_PUBLIC_ROOT, else <DataDir>/market-public (what
// market-lxc's Wire picks in a stack).
func (s *Stack) PublicRoot() string {
	if r := os.Getenv(marketlxc.EnvPublicRoot); r != "" {
		return r
	}
	return filepath.Join(s.cfg.DataDir, marketlxc.PublicRootDir)
}

// serveMarkets serves the public root read-only on cfg.MarketHTTPAddr
// (--market-http-addr), so that an http marketplace whose PUBLIC_DIR is
// <root>/<dir> has BASE_URL http://<addr>/<dir>/. Hidden names (the
// publishers' .slipway state: the lock, blobs being received) are not
// served, nor are directory listings. The address it listens on joins the
// stack's fetch guard before the services start: market-lxc lists and the
// converter imports what the stack itself serves, on loopback.
func (s *Stack) serveMarkets() error {
	if s.cfg.MarketHTTPAddr == "" {
		return nil
	}
	root := s.PublicRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return fmt.Errorf("market public root: %w", err)
	}
	ln, err := net.Listen("tcp", s.cfg.MarketHTTPAddr)
	if err != nil {
		return fmt.Errorf("market http: %w", err)
	}
	guard, err := netguard.Parse(strings.Trim(s.cfg.Guard.String()+","+ln.Addr().String(), ","))
	if err != nil {
		ln.Close()
		return fmt.Errorf("market http: %w", err)
	}
	s.cfg.Guard = guard
	srv := &http.Server{Handler: PublicFiles(root), ReadHeaderTimeout: 10 * time.Second}
	s.marketHTTP = srv
	s.MarketURL = "http://" + ln.Addr().String()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.cfg.Logger.Error("market http server", "err", err)
		}
	}()
	return nil
}

// PublicFiles serves root's files by GET and HEAD, refusing hidden path
// segments (the publishers' .slipway state) and directory listings: what
// `slipway up --market-http-addr` and `slipway market serve` serve.
func PublicFiles(root string) http.Handler {
	files := http.FileServer(http.Dir(root))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		for seg := range strings.SplitSeq(r.URL.Path, "/") {
			if strings.HasPrefix(seg, ".") {
				http.NotFound(w, r)
				return
			}
		}
		if strings.HasSuffix(r.URL.Path, "/") {
			http.NotFound(w, r)
			return
		}
		files.ServeHTTP(w, r)
	})
}

// stopMarkets stops the public root's server.
func (s *Stack) stopMarkets() { stopHTTP(s.marketHTTP) }

// stopHTTP shuts srv down (nil: nothing to stop), giving requests under
// way 5 seconds.
func stopHTTP(srv *http.Server) {
	if srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}
