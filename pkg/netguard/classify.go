package netguard

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"

	"github.com/slipway/slipway/schemas"
)

// FailureCode classifies a failed outbound request by what went wrong on
// the way, as a code of the catalogue (schemas/errors.json), the same way
// for every fetch (HTTP sources, registries): a name that does not resolve
// (host-not-found), a refused TLS certificate (tls-certificate), an address
// or redirect the policy refuses (access-denied) are final; a failed
// lookup, a refused, reset or timed-out connection are unavailable (they
// may heal). It returns "" for an error that is none of these.
func FailureCode(err error) string {
	var dnsErr *net.DNSError
	var unknownCA x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalid x509.CertificateInvalidError
	var certErr *tls.CertificateVerificationError
	var redirect *RedirectError
	var netErr net.Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return schemas.CodeHostNotFound
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalid), errors.As(err, &certErr):
		return schemas.CodeTLSCertificate
	case errors.As(err, &redirect):
		return schemas.CodeAccessDenied
	}
	if _, ok := AsRefused(err); ok {
		return schemas.CodeAccessDenied
	}
	switch {
	case errors.As(err, &dnsErr), errors.As(err, &netErr),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET),
		errors.Is(err, io.ErrUnexpectedEOF):
		return schemas.CodeUnavailable
	}
	return ""
}

// StatusCode classifies an HTTP answer that is not the data: 404 and 410
// are source-not-found, 401 and 403 access-denied, 408, 429 and 5xx
// unavailable (try later), any other 4xx refused; "" for the rest.
func StatusCode(status int) string {
	switch {
	case status == http.StatusNotFound, status == http.StatusGone:
		return schemas.CodeSourceNotFound
	case status == http.StatusUnauthorized, status == http.StatusForbidden:
		return schemas.CodeAccessDenied
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests, status >= 500 && status < 600:
		return schemas.CodeUnavailable
	case status >= 400 && status < 500:
		return schemas.CodeRefused
	}
	return ""
}
