package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/schemas"
)

// TerminalError marks an error that retrying cannot fix: the message is
// terminated instead of redelivered.
type TerminalError struct{ Err error }

func (e *TerminalError) Error() string { return e.Err.Error() }
func (e *TerminalError) Unwrap() error { return e.Err }

// Terminal marks err terminal. Terminal(nil) is nil.
func Terminal(err error) error {
	if err == nil {
		return nil
	}
	return &TerminalError{Err: err}
}

// IsTerminal reports whether err, or an error it wraps, is terminal: marked
// with Terminal, or given a code the catalogue says is not retryable
// (WithCode).
func IsTerminal(err error) bool {
	var t *TerminalError
	if errors.As(err, &t) {
		return true
	}
	var c *CodedError
	if errors.As(err, &c) {
		info, ok := schemas.LookupErrorCode(c.Code)
		return ok && !info.Retryable
	}
	return false
}

// CodedError is an error classified where it arose, with its code from the
// catalogue (schemas.Code…, errors.json). Failed events carry the code, so
// no caller reads the message to decide what to do.
type CodedError struct {
	Code string
	Err  error
}

func (e *CodedError) Error() string       { return e.Err.Error() }
func (e *CodedError) Unwrap() error       { return e.Err }
func (e *CodedError) FailureCode() string { return e.Code }

// WithCode gives err its catalogue code. An error whose code the catalogue
// says is not retryable (host-not-found, source-not-found…) is terminal as
// well (IsTerminal). WithCode(code, nil) is nil.
func WithCode(code string, err error) error {
	if err == nil {
		return nil
	}
	return &CodedError{Code: code, Err: err}
}

// coded is an error that knows its catalogue code (CodedError, CallError).
type coded interface{ FailureCode() string }

// CodeOf returns the catalogue code of err: deadline-exceeded for a job
// past its deadline (whatever failed when it ran out); else the code of the
// outermost CodedError or CallError (or other error with a FailureCode) it
// wraps; else invalid-command for a payload that does not match its
// schema, refused for another terminal error and internal for the rest.
func CodeOf(err error) string {
	var de *DeadlineError
	if errors.As(err, &de) {
		return schemas.CodeDeadlineExceeded
	}
	var c coded
	if errors.As(err, &c) && c.FailureCode() != "" {
		return c.FailureCode()
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return schemas.CodeDeadlineExceeded
	case errors.Is(err, schemas.ErrInvalid), errors.Is(err, schemas.ErrMalformed):
		return schemas.CodeInvalidCommand
	case IsTerminal(err):
		return schemas.CodeRefused
	}
	return schemas.CodeInternal
}

// CodeOr is CodeOf(err), or fallback when err has no code of its own (CodeOf
// would only say refused or internal): for a service's refusals by its own
// rules, say conflict.
func CodeOr(err error, fallback string) string {
	if code := CodeOf(err); code != schemas.CodeRefused && code != schemas.CodeInternal {
		return code
	}
	return fallback
}

// NewFailure is the payload of a failed event reporting err: its code
// (CodeOf), its message fitted to the schema and whether a retry may pass
// (not when err is terminal).
func NewFailure(err error) schemas.Failure {
	msg := "unknown error"
	if err != nil {
		msg = err.Error()
	}
	return schemas.Failure{Code: CodeOf(err), Error: schemas.ErrorText(msg), Retryable: !IsTerminal(err)}
}

// Status codes of query errors, carried in the micro error header.
const (
	CodeInvalid   = "400"
	CodeForbidden = "403"
	CodeNotFound  = "404"
	CodeInternal  = "500"
	// CodeUnavailable is set on the client side when no service answered.
	CodeUnavailable = "503"
)

// statusError is a handler error with the code its reply carries.
type statusError struct {
	code string
	err  error
}

func (e *statusError) Error() string { return e.err.Error() }
func (e *statusError) Unwrap() error { return e.err }

// NotFound marks a query handler error as "404".
func NotFound(err error) error { return &statusError{code: CodeNotFound, err: err} }

// Forbidden marks a query handler error as "403": the asker may not see
// what they asked for.
func Forbidden(err error) error { return &statusError{code: CodeForbidden, err: err} }

// Invalid marks a query handler error as "400": the request is wrong.
func Invalid(err error) error { return &statusError{code: CodeInvalid, err: err} }

// QueryError is the error reply of a query, as the client sees it.
type QueryError struct {
	Code        string
	Description string
}

func (e *QueryError) Error() string {
	return fmt.Sprintf("%s (code %s)", e.Description, e.Code)
}

// ErrorCode returns the query status code of err: the code of a QueryError
// or of an error marked with NotFound/Invalid; "" otherwise.
func ErrorCode(err error) string {
	var q *QueryError
	if errors.As(err, &q) {
		return q.Code
	}
	var s *statusError
	if errors.As(err, &s) {
		return s.code
	}
	return ""
}

// IsNotFound reports whether err is a "404" query error.
func IsNotFound(err error) bool { return ErrorCode(err) == CodeNotFound }
