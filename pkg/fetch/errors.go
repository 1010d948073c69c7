package fetch

import (
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/inspect"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/schemas"
)

// permanent marks errors that a retry cannot fix: the input is wrong, not
// the network.
type permanent interface{ Permanent() bool }

// IsPermanent reports whether err (or an error it wraps) is one that
// retrying the fetch cannot fix: an unsupported or refused source, a 4xx
// answer, a missing object, a checksum mismatch, corrupt compressed data or
// a size limit. Network errors, 5xx answers and a full disk are not.
func IsPermanent(err error) bool {
	var p permanent
	return errors.As(err, &p) && p.Permanent() || bus.IsTerminal(err)
}

// permanentError wraps an error to mark it permanent.
type permanentError struct{ err error }

func (e *permanentError) Error() string   { return e.err.Error() }
func (e *permanentError) Unwrap() error   { return e.err }
func (e *permanentError) Permanent() bool { return true }

func permanentf(format string, args ...any) error {
	return &permanentError{fmt.Errorf(format, args...)}
}

// withCode gives a failed request its code from the catalogue
// (schemas/errors.json), classified where it arose; a code the catalogue
// says is not retryable makes it permanent. "" leaves err as it is.
func withCode(code string, err error) error {
	if code == "" {
		return err
	}
	return bus.WithCode(code, err)
}

// ChecksumError is returned when the fetched bytes do not have the declared
// digest.
type ChecksumError struct {
	Source   string
	Expected string // "sha256:<hex>"
	Actual   string // "sha256:<hex>"
}

func (e *ChecksumError) Error() string {
	return fmt.Sprintf("checksum mismatch for %s: expected %s, got %s", e.Source, e.Expected, e.Actual)
}

// Permanent implements the permanent marker: the same bytes will hash the same.
func (e *ChecksumError) Permanent() bool { return true }

// FailureCode is invalid-input: the data is not what the command declared.
func (e *ChecksumError) FailureCode() string { return schemas.CodeInvalidInput }

// HTTPStatusError is an HTTP answer that is neither the data nor a redirect.
type HTTPStatusError struct {
	URL        string
	StatusCode int
	Status     string
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("GET %s: %s", e.URL, e.Status)
}

// Permanent is true for 4xx answers other than 408 (timeout) and 429 (too
// many requests), which say "try later".
func (e *HTTPStatusError) Permanent() bool {
	c := e.StatusCode
	return c >= 400 && c < 500 && c != 408 && c != 429
}

// FailureCode classifies the answer: 404 and 410 source-not-found, 401 and
// 403 access-denied, 408, 429 and 5xx unavailable.
func (e *HTTPStatusError) FailureCode() string { return netguard.StatusCode(e.StatusCode) }

// LimitError is returned when the decompressed data grows past MaxBytes,
// or past what Options.Bound allowed (Why says why).
type LimitError struct {
	Limit int64
	Why   string
}

func (e *LimitError) Error() string {
	s := fmt.Sprintf("decompressed data exceeds the limit of %s", humanBytes(e.Limit))
	if e.Why != "" {
		s += " (" + e.Why + ")"
	}
	return s
}

// Permanent implements the permanent marker.
func (e *LimitError) Permanent() bool { return true }

// FailureCode is too-large.
func (e *LimitError) FailureCode() string { return schemas.CodeTooLarge }

// NoSpaceError is returned instead of ENOSPC when the destination file
// system runs short. It is not permanent: space may be freed.
type NoSpaceError struct {
	Dir        string
	Need, Free int64 // Need 0 when unknown
}

func (e *NoSpaceError) Error() string {
	if e.Need > 0 {
		return fmt.Sprintf("not enough space in %s: need %s, %s free", e.Dir, humanBytes(e.Need), humanBytes(e.Free))
	}
	return fmt.Sprintf("not enough space in %s: %s free", e.Dir, humanBytes(e.Free))
}

// FailureCode is unavailable: space may be freed.
func (e *NoSpaceError) FailureCode() string { return schemas.CodeUnavailable }

// humanBytes is n in binary units, as inspect writes sizes in messages.
func humanBytes(n int64) string { return inspect.HumanBytes(uint64(max(n, 0))) }
