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
// must see what a client asks of the store (Count) or spoil the bytes it
// sends (Corrupt). Requests pass unchanged otherwise, signatures included:
// the client signs for the proxy's host, which is the Host the server sees.
type S3Proxy struct {
	srv *httptest.Server

	mu      sync.Mutex
	counts  map[string]int // by "METHOD" and "METHOD bucket/key"
	corrupt func(*http.Request) bool
}

// Proxy starts an S3Proxy in front of s, stopped when the test ends, and
// returns it with the S3 that reaches the server through it.
func (s S3) Proxy(t testing.TB) (*S3Proxy, S3) {
	t.Helper()
	if s.Secure {
		t.Fatal("testenv: S3Proxy forwards plain HTTP only")
	}
	target := &url.URL{Scheme: "http", Host: s.Endpoint}
	p := &S3Proxy{counts: map[string]int{}}
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the host the client signed
		p.record(r.Out)
	}}
	p.srv = httptest.NewServer(rp)
	t.Cleanup(p.srv.Close)
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
