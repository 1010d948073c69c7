package bus

import (
	"errors"
	"fmt"
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

// IsTerminal reports whether err, or an error it wraps, is terminal.
func IsTerminal(err error) bool {
	var t *TerminalError
	return errors.As(err, &t)
}

// Status codes of query errors, carried in the micro error header.
const (
	CodeInvalid  = "400"
	CodeNotFound = "404"
	CodeInternal = "500"
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
