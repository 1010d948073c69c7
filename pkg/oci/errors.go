package oci

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/slipway/slipway/pkg/netguard"
)

// ErrUnauthorized matches (errors.Is) every RegistryError for a refused or
// missing authentication.
var ErrUnauthorized = errors.New("authentication refused")

// RegistryError is a registry's answer, kept in the registry's own words.
type RegistryError struct {
	Registry string // host[:port]
	Status   int    // HTTP status; 0 when no answer came
	Code     string // first error code, e.g. "MANIFEST_UNKNOWN", "NAME_UNKNOWN", "UNAUTHORIZED"
	Message  string // the registry's message(s), "CODE: message; …"
	Context  string // what was asked for: `tag "nope" in team/app`, `repository "team/app"`
	Err      error
}

func (e *RegistryError) Error() string {
	msg := fmt.Sprintf("registry %s: %s", e.Registry, e.Message)
	if e.Context != "" {
		msg += " (" + e.Context + ")"
	}
	return msg
}

func (e *RegistryError) Unwrap() error { return e.Err }

// FailureCode classifies the failure for a failed event (schemas/errors.json):
// by the registry's HTTP status when it answered (404 source-not-found, 401
// access-denied, 5xx unavailable…), else by what went wrong on the way
// (host-not-found, tls-certificate…); "" when neither says.
func (e *RegistryError) FailureCode() string {
	if e.Status != 0 {
		return netguard.StatusCode(e.Status)
	}
	return netguard.FailureCode(e.Err)
}

// Is makes errors.Is(err, ErrUnauthorized) true for authentication failures.
func (e *RegistryError) Is(target error) bool {
	return target == ErrUnauthorized && isAuthStatus(e.Status)
}

func isAuthStatus(code int) bool {
	return code == http.StatusUnauthorized || code == http.StatusForbidden
}

// registryError turns an error from go-containerregistry about ref into a
// RegistryError naming the registry, its message, and what was asked for.
func registryError(err error, ref name.Reference, cred credentials) error {
	if err == nil {
		return nil
	}
	var re *RegistryError
	var pe *PlatformError
	if errors.As(err, &re) || errors.As(err, &pe) {
		return err
	}
	e := &RegistryError{Registry: ref.Context().RegistryStr(), Err: err, Message: err.Error()}
	if refused, ok := netguard.AsRefused(err); ok {
		e.Message = refused.Error() // not go-containerregistry's retelling of the URL
		return e
	}
	var te *transport.Error
	if !errors.As(err, &te) {
		return e
	}
	e.Status, e.Message = te.StatusCode, diagnostics(te)
	if len(te.Errors) > 0 {
		e.Code = string(te.Errors[0].Code)
	}
	e.Context = askedFor(e.Code, ref)
	if isAuthStatus(te.StatusCode) {
		e.Message = authMessage(e, ref, cred)
	}
	return e
}

// diagnostics formats the registry's error list as "CODE: message; …",
// leaving out the free-form detail, or the HTTP status when there is none.
func diagnostics(te *transport.Error) string {
	if len(te.Errors) == 0 {
		return fmt.Sprintf("HTTP %d %s", te.StatusCode, http.StatusText(te.StatusCode))
	}
	parts := make([]string, len(te.Errors))
	for i, d := range te.Errors {
		parts[i] = fmt.Sprintf("%s: %s", d.Code, d.Message)
	}
	return strings.Join(parts, "; ")
}

func askedFor(code string, ref name.Reference) string {
	switch {
	case code == string(transport.NameUnknownErrorCode):
		return fmt.Sprintf("repository %q", ref.Context().RepositoryStr())
	case isDigest(ref):
		return fmt.Sprintf("digest %q in %s", ref.Identifier(), ref.Context().RepositoryStr())
	default:
		return fmt.Sprintf("tag %q in %s", ref.Identifier(), ref.Context().RepositoryStr())
	}
}

func isDigest(ref name.Reference) bool {
	_, ok := ref.(name.Digest)
	return ok
}

func authMessage(e *RegistryError, ref name.Reference, cred credentials) string {
	repo := ref.Context().RepositoryStr()
	if cred.anon {
		return fmt.Sprintf("authentication required for %s and %s has no credentials for %s: %s",
			repo, cred.source, e.Registry, e.Message)
	}
	return fmt.Sprintf("authentication refused for %s with the credentials from %s: %s",
		repo, cred.source, e.Message)
}
