package inspect

import (
	"errors"
	"fmt"
)

// ErrRefused matches every refusal: the input is unsafe or broken and
// retrying cannot help.
var ErrRefused = errors.New("disk image refused")

// Kinds of refusal; a *RefusedError matches exactly one of them with
// errors.Is, as well as ErrRefused.
var (
	ErrEmpty             = errors.New("empty file")
	ErrTruncated         = errors.New("truncated image")
	ErrMalformed         = errors.New("malformed header")
	ErrBackingFile       = errors.New("backing file")
	ErrDataFile          = errors.New("external data file")
	ErrExternalReference = errors.New("reference to another file")
	ErrUnknownFeature    = errors.New("unknown feature")
	ErrEncrypted         = errors.New("encrypted image")
	ErrUnsupported       = errors.New("unsupported format")
	ErrPolyglot          = errors.New("polyglot file")
	ErrTooLarge          = errors.New("virtual size too large")
	ErrFormatMismatch    = errors.New("format mismatch")
)

// RefusedError says why an image was refused.
type RefusedError struct {
	Format Format // the format being parsed when refused; may be empty
	Kind   error  // one of the Err* kinds above
	Reason string // a sentence a person can act on
}

func (e *RefusedError) Error() string { return e.Reason }

// Is makes errors.Is(err, ErrRefused) and errors.Is(err, e.Kind) true.
func (e *RefusedError) Is(target error) bool {
	return target == ErrRefused || target == e.Kind
}

func refuse(f Format, kind error, format string, args ...any) error {
	return &RefusedError{Format: f, Kind: kind, Reason: fmt.Sprintf(format, args...)}
}
