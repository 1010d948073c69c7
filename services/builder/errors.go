package builder

import (
	"context"
	"errors"
	"os"
	"syscall"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/fsimage"
)

// jobError is a failed job: where it failed and whether retrying can help.
type jobError = worker.PhaseError[schemas.BuilderPhase]

// errInvalid marks a command that is wrong as sent.
var errInvalid = worker.ErrInvalid

// failed classifies err from phase.
func failed(phase schemas.BuilderPhase, err error) *jobError {
	return &jobError{Phase: phase, Err: err, Terminal: isTerminal(phase, err)}
}

// asJobError is err as a jobError, a failure of the pull when it is not one.
func asJobError(err error) *jobError {
	var je *jobError
	if errors.As(err, &je) {
		return je
	}
	return failed(schemas.BuilderPhasePull, err)
}

// isTerminal decides whether retrying could help. Cancellation and a full
// disk always may; the registry and the store are retried for answers that
// may change (network, 5xx, 408, 429); the local phases (flatten, mkfs)
// fail the same way on the same layers.
func isTerminal(phase schemas.BuilderPhase, err error) bool {
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return false
	case errors.Is(err, errInvalid), errors.Is(err, errNoGuestInit):
		return true
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return false
	}
	switch phase {
	case schemas.BuilderPhasePull:
		return isPermanentPull(err)
	case schemas.BuilderPhaseUpload:
		return blob.IsClientError(err)
	}
	return true
}

// isPermanentPull tells a registry's final answer (unknown manifest,
// denied, digest mismatch, not a disk image), a host name that does not
// resolve, a refused certificate or an address the guard refuses from a
// failure to get an answer.
func isPermanentPull(err error) bool {
	if code := pullCode(err); code != "" {
		c, _ := schemas.LookupErrorCode(code)
		return !c.Retryable
	}
	var pe *os.PathError
	var le *os.LinkError
	if errors.As(err, &pe) || errors.As(err, &le) {
		return false // the local cache's disk
	}
	return true // digest or size mismatch, malformed manifest, disk error
}

// pullCode is the code of a registry's answer or of the way to it; "" when
// neither says.
func pullCode(err error) string {
	var re *oci.RegistryError
	if errors.As(err, &re) {
		if code := re.FailureCode(); code != "" {
			return code
		}
	}
	return netguard.FailureCode(err)
}

// failureCode is the code of a job's failure for its failed event.
func failureCode(err error) string {
	switch {
	case errors.Is(err, errInvalid):
		return schemas.CodeInvalidCommand
	case errors.Is(err, errNoGuestInit):
		return schemas.CodeInvalidInput
	case errors.Is(err, fsimage.ErrTooSmall):
		return schemas.CodeTooLarge
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return schemas.CodeUnavailable
	}
	if code := pullCode(err); code != "" {
		return code
	}
	return bus.CodeOf(err)
}
