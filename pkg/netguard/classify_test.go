package netguard

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/slipway/slipway/schemas"
)

func TestFailureCodeOfRealFailures(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// .invalid never resolves (RFC 6761).
	_, err := (&net.Resolver{}).LookupHost(ctx, "nonexistent.invalid")
	if got := FailureCode(fmt.Errorf("GET: %w", err)); got != schemas.CodeHostNotFound {
		t.Errorf("lookup of a .invalid name (%v): %q, want host-not-found", err, got)
	}
	// A self-signed certificate the client does not trust.
	srv := httptest.NewUnstartedServer(http.NotFoundHandler())
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the handshake the client refuses
	srv.StartTLS()
	defer srv.Close()
	_, err = http.Get(srv.URL)
	if got := FailureCode(err); got != schemas.CodeTLSCertificate {
		t.Errorf("untrusted certificate (%v): %q, want tls-certificate", err, got)
	}
	// Nothing listens: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = net.DialTimeout("tcp", addr, time.Second)
	if got := FailureCode(err); got != schemas.CodeUnavailable {
		t.Errorf("connection refused (%v): %q, want unavailable", err, got)
	}
	refused := &RefusedError{Addr: netip.MustParseAddrPort("127.0.0.1:80"), Reason: "loopback"}
	if got := FailureCode(fmt.Errorf("dial: %w", refused)); got != schemas.CodeAccessDenied {
		t.Errorf("refused by the guard: %q", got)
	}
	if got := FailureCode(x509.HostnameError{Host: "x"}); got != schemas.CodeTLSCertificate {
		t.Errorf("host name mismatch: %q", got)
	}
	if got := FailureCode(errors.New("something else")); got != "" {
		t.Errorf("an unrelated error: %q", got)
	}
}

func TestStatusCode(t *testing.T) {
	for status, want := range map[int]string{
		404: schemas.CodeSourceNotFound, 410: schemas.CodeSourceNotFound, 401: schemas.CodeAccessDenied,
		403: schemas.CodeAccessDenied, 429: schemas.CodeUnavailable, 503: schemas.CodeUnavailable,
		408: schemas.CodeUnavailable, 400: schemas.CodeRefused, 200: "",
	} {
		if got := StatusCode(status); got != want {
			t.Errorf("StatusCode(%d) = %q, want %q", status, got, want)
		}
	}
}
