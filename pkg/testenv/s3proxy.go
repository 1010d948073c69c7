package testenv

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// S3Proxy is a loopback HTTP proxy in front of an S3 server, for tests that
// must see what a client asks of the store (Count, InFlight), spoil the
// bytes it sends (Corrupt), keep its requests waiting (Hold) or have it
// retry one (SlowDownOnce). Requests pass unchanged otherwise, signatures
// included: the client signs for the proxy's host, which is the Host the
// server sees.
type S3Proxy struct {
	srv *httptest.Server

	mu       sync.Mutex
	counts   map[string]int // by "METHOD" and "METHOD bucket/key"
	corrupt  func(*http.Request) bool
	hold     func(*http.Request) bool
	gate     chan struct{} // closed to let held requests go
	slowDown func(*http.Request) bool
	inFlight map[string]int // by method, now
	maxIn    map[string]int // by method, the most at once
}

// Proxy starts an S3Proxy in front of s, stopped when the test ends, and
// returns it with the S3 that reaches the server through it.
func (s S3) Proxy(t testing.TB) (*S3Proxy, S3) {
	t.Helper()
	if s.Secure {
		t.Fatal("testenv: S3Proxy forwards plain HTTP only")
	}
	target := &url.URL{Scheme: "http", Host: s.Endpoint}
	p := &S3Proxy{counts: map[string]int{}, inFlight: map[string]int{}, maxIn: map[string]int{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the host the client signed
		p.record(r.Out)
	}}
	p.srv = httptest.NewServer(p.handler(rp))
	t.Cleanup(func() {
		p.Hold(nil) // Close waits for the requests still held
		p.srv.Close()
	})
	through := s
	through.Endpoint = strings.TrimPrefix(p.srv.URL, "http://")
	return p, through
}

// Count is how many requests of method (GET, HEAD, PUT, …) went through,
// for the object bucket/key when key is given ("" counts all).
func (p *S3Proxy) Count(method, bucket, key string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if key == "" {
		return p.counts[method]
	}
	return p.counts[method+" "+bucket+"/"+key]
}

// Corrupt has the proxy flip one byte in the middle of the body of every
// request match accepts (nil stops it). The request still goes out with
// its headers, length and signature unchanged: only a check of the bytes
// themselves can notice.
func (p *S3Proxy) Corrupt(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corrupt = match
}

func (p *S3Proxy) record(r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.counts[r.Method]++
	p.counts[r.Method+" "+strings.TrimPrefix(r.URL.Path, "/")]++
	if p.corrupt != nil && r.Body != nil && r.ContentLength > 0 && p.corrupt(r) {
		r.Body = &flipReader{rc: r.Body, at: r.ContentLength / 2}
	}
}

// flipReader inverts the byte at offset at of the stream it reads.
type flipReader struct {
	rc  io.ReadCloser
	at  int64
	off int64
}

func (f *flipReader) Read(b []byte) (int, error) {
	n, err := f.rc.Read(b)
	if i := f.at - f.off; i >= 0 && i < int64(n) {
		b[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.rc.Close() }

// Hold keeps the requests match accepts waiting in the proxy, before they
// reach the server, until Hold is called again (nil: hold none), the
// client gives up or the test ends; a held request counts in InFlight.
func (p *S3Proxy) Hold(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
	}
	p.hold, p.gate = match, nil
	if match != nil {
		p.gate = make(chan struct{})
	}
}

// SlowDownOnce has the proxy answer the next request match accepts itself,
// after reading its whole body, with S3's 503 SlowDown, which clients
// retry.
func (p *S3Proxy) SlowDownOnce(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.slowDown = match
}

// InFlight is how many requests of method are in the proxy now (held,
// or on their way to the server and back), and the most there were at
// once.
func (p *S3Proxy) InFlight(method string) (now, most int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inFlight[method], p.maxIn[method]
}

// handler counts a request in flight and holds or answers it as told
// before passing it to next.
func (p *S3Proxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gate, slowDown := p.enter(r)
		defer p.leave(r.Method)
		if gate != nil {
			select {
			case <-gate:
			case <-r.Context().Done():
				return
			}
		}
		if slowDown {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, `<?xml version="1.0" encoding="UTF-8"?>`+
				`<Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// enter counts r in flight and says whether to hold it (the gate to wait
// for) and whether to answer it with SlowDown.
func (p *S3Proxy) enter(r *http.Request) (gate chan struct{}, slowDown bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight[r.Method]++
	p.maxIn[r.Method] = max(p.maxIn[r.Method], p.inFlight[r.Method])
	if p.hold != nil && p.hold(r) {
		gate = p.gate
	}
	if p.slowDown != nil && p.slowDown(r) {
		p.slowDown, slowDown = nil, true
	}
	return gate, slowDown
}

func (p *S3Proxy) leave(method string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.inFlight[method]--
}
