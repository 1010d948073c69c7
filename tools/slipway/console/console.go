// Package console is Slipway's web console: static files (static/, and
// dist/app.js bundled by esbuild from web/src) embedded in the slipway
// binary, served by `slipway up` and `slipway console`. The browser talks
// to NATS itself, over the NATS server's WebSocket listener, with the
// user's own credentials: this server hands out files and the address of
// NATS, and never sees a credential.
//
// dist/ is committed, so that `go build` and `go test` work from a clean
// clone without Node; `make console` rebuilds it and `make console-check`
// (part of `make test`) fails when it differs from what web/src builds to.
package console

import (
	"embed"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/slipway/slipway/tools/slipway/render"
)

//go:embed static dist
var files embed.FS

// Config is what the page needs to know, served as /config.json.
type Config struct {
	// NATSWebSocketURL is where the browser reaches NATS (ws:// or
	// wss://), as the browser sees it.
	NATSWebSocketURL string `json:"nats_ws_url"`
	// S3URL is the S3 endpoint as browsers reach it (http(s)://host:port,
	// the host the catalog's presigned URLs name): the page PUTs the
	// parts of a desktop upload there. Empty, the page cannot upload.
	S3URL string `json:"s3_url,omitempty"`
	// Prefix is the subjects' prefix.
	Prefix string `json:"prefix"`
	// Names are the CLI's short forms of states and types (oneimage
	// list's STAT and TYPE), so the page shows what the CLI shows.
	Names render.ShortNames `json:"names"`
	// CACert, when set, is the PEM certificate of the CA of a wss://
	// listener, offered at /ca.crt for people to make their browser trust.
	CACert []byte `json:"-"`
	// HasCA tells the page that /ca.crt is there.
	HasCA bool `json:"has_ca"`
}

// Handler serves the console with cfg: the embedded files by GET and HEAD,
// and /config.json. Every response forbids framing and lets the page
// connect only to its own origin, to cfg's NATS and to cfg's S3.
func Handler(cfg Config) (http.Handler, error) {
	if cfg.Names.States == nil {
		cfg.Names = render.Names()
	}
	ws, err := origin("NATS address for browsers", cfg.NATSWebSocketURL, "ws", "wss")
	if err != nil {
		return nil, err
	}
	cfg.NATSWebSocketURL = ws
	connect := "'self' " + ws
	if cfg.S3URL != "" {
		if cfg.S3URL, err = origin("S3 address for browsers", cfg.S3URL, "http", "https"); err != nil {
			return nil, err
		}
		connect += " " + cfg.S3URL
	}
	cfg.HasCA = len(cfg.CACert) > 0
	conf, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	root, err := merged()
	if err != nil {
		return nil, err
	}
	files := http.FileServerFS(root)
	csp := "default-src 'self'; connect-src " + connect + "; img-src 'self' data:; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			http.Error(w, "read-only", http.StatusMethodNotAllowed)
			return
		}
		if r.URL.Path == "/config.json" {
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			_, _ = w.Write(conf)
			return
		}
		if r.URL.Path == "/ca.crt" && cfg.HasCA {
			h.Set("Content-Type", "application/x-pem-file")
			_, _ = w.Write(cfg.CACert)
			return
		}
		files.ServeHTTP(w, r)
	}), nil
}

// origin is an address for browsers (what names it in errors) as
// scheme://host[:port]: a URL of one of schemes without user, path, query
// or fragment, so that it goes into the Content-Security-Policy as one
// source and nothing more.
func origin(what, raw string, schemes ...string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || !slices.Contains(schemes, u.Scheme) || u.Host == "" || u.User != nil ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || strings.ContainsAny(u.Host, " ;,'\"") {
		return "", fmt.Errorf("console: %s %q: want %s://host:port or %s://host:port", what, raw, schemes[0], schemes[1])
	}
	return u.Scheme + "://" + u.Host, nil
}

// merged is static/ and dist/ as one tree: the hand-written files and the
// bundle beside them.
func merged() (fs.FS, error) {
	static, err := fs.Sub(files, "static")
	if err != nil {
		return nil, err
	}
	dist, err := fs.Sub(files, "dist")
	if err != nil {
		return nil, err
	}
	return overlay{static, dist}, nil
}

// overlay opens a name in the first FS that has it.
type overlay []fs.FS

func (o overlay) Open(name string) (fs.File, error) {
	var first error
	for _, f := range o {
		file, err := f.Open(name)
		if err == nil {
			return file, nil
		}
		if first == nil {
			first = err
		}
	}
	return nil, first
}
