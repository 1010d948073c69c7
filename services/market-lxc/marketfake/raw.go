package marketfake

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// Raw serves fixed files, and endless ones, for tests of hostile servers.
type Raw struct {
	control
	URL string // ending in "/"
}

// NewRaw serves files (path → content) and, for each path in endless, that
// many bytes of "A" streamed without being held in memory (a huge index).
func NewRaw(t testing.TB, files map[string][]byte, endless map[string]int64) *Raw {
	t.Helper()
	r := &Raw{control: newControl()}
	for p, b := range files {
		r.put(p, b)
	}
	srv := start(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.record(req)
		if n, ok := endless[strings.TrimPrefix(req.URL.Path, "/")]; ok {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
			_, _ = io.CopyN(w, repeatA{}, n)
			return
		}
		r.serveFile(w, req)
	}))
	r.URL = srv.URL + "/"
	return r
}

// NewRawChunked is NewRaw whose endless files carry no Content-Length, so a
// reader only learns their size by reading.
func NewRawChunked(t testing.TB, endless map[string]int64) *Raw {
	t.Helper()
	r := &Raw{control: newControl()}
	srv := start(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.record(req)
		n, ok := endless[strings.TrimPrefix(req.URL.Path, "/")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.(http.Flusher).Flush()
		_, _ = io.CopyN(w, repeatA{}, n)
	}))
	r.URL = srv.URL + "/"
	return r
}

type repeatA struct{}

func (repeatA) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'A'
	}
	return len(p), nil
}
