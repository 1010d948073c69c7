package catalog

import (
	"fmt"
	"slices"

	"github.com/slipway/slipway/schemas"
)

// State is the life-cycle state of an image (OpenNebula's image states).
type State string

// Image states.
const (
	StateLocked         State = "LOCKED"           // data is being imported or written
	StateReady          State = "READY"            // usable
	StateUsed           State = "USED"             // non-persistent, used by RVMs VMs
	StateUsedPers       State = "USED_PERS"        // persistent, used by its one VM
	StateDisabled       State = "DISABLED"         // no new VM may use it
	StateError          State = "ERROR"            // an operation failed; see the record's error
	StateDelete         State = "DELETE"           // being deleted
	StateClone          State = "CLONE"            // being cloned
	StateLockedUsed     State = "LOCKED_USED"      // USED, and an operation holds the lock
	StateLockedUsedPers State = "LOCKED_USED_PERS" // USED_PERS, and an operation holds the lock
)

// transitions is the whole life cycle in one place: the states each state
// may move to. Every state change of the catalog goes through
// State.CanTransition, so a change not listed here cannot happen.
var transitions = map[State][]State{
	StateLocked:         {StateReady, StateError, StateLockedUsed, StateLockedUsedPers},
	StateReady:          {StateUsed, StateUsedPers, StateDisabled, StateLocked, StateClone, StateDelete, StateError},
	StateUsed:           {StateReady, StateLockedUsed, StateClone, StateError},
	StateUsedPers:       {StateReady, StateLockedUsedPers, StateError},
	StateDisabled:       {StateReady, StateDelete},
	StateError:          {StateDelete},
	StateDelete:         {},
	StateClone:          {StateReady, StateUsed, StateError},
	StateLockedUsed:     {StateUsed, StateLocked, StateError},
	StateLockedUsedPers: {StateUsedPers, StateLocked, StateError},
}

// States lists every state, in the order of the schema's enumeration.
func States() []State {
	return []State{StateLocked, StateReady, StateUsed, StateUsedPers, StateDisabled,
		StateError, StateDelete, StateClone, StateLockedUsed, StateLockedUsedPers}
}

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	_, ok := transitions[s]
	return ok
}

// CanTransition reports whether an image in state s may move to state to.
// Staying in the same state is not a transition.
func (s State) CanTransition(to State) bool {
	return slices.Contains(transitions[s], to)
}

// Op is an operation a person asks of an image.
type Op string

// Operations checked by Allow.
const (
	OpEnable        Op = "enable"
	OpDisable       Op = "disable"
	OpPersistent    Op = "persistent"
	OpNonPersistent Op = "nonpersistent"
	OpRename        Op = "rename"
	OpUpdate        Op = "update"
	OpDelete        Op = "delete"
)

// Allow says whether op may be applied to img, and if not, why, in words a
// person can act on. It is the one place where the rules of the life cycle
// that depend on more than the state (type, running VMs) live.
func Allow(op Op, img *schemas.Image) error {
	st := State(img.State)
	if st == StateDelete {
		return fmt.Errorf("image %d is being deleted: it cannot be changed", img.ID)
	}
	switch op {
	case OpEnable:
		switch st {
		case StateDisabled, StateReady: // enabling a READY image changes nothing
			return nil
		case StateError:
			return fmt.Errorf("image %d is in ERROR (%s): it cannot be enabled; delete it and import it again", img.ID, img.Error)
		}
		return fmt.Errorf("image %d is %s: only a DISABLED image can be enabled", img.ID, describe(img))
	case OpDisable:
		switch st {
		case StateReady, StateDisabled:
			return nil
		case StateUsed, StateUsedPers, StateLockedUsed, StateLockedUsedPers:
			return fmt.Errorf("image %d is %s: it cannot be disabled while VMs use it", img.ID, describe(img))
		}
		return fmt.Errorf("image %d is %s: only a READY image can be disabled", img.ID, describe(img))
	case OpPersistent:
		if IsFileType(img.Type) {
			return fmt.Errorf("image %d is a %s file: file images cannot be persistent", img.ID, img.Type)
		}
		return allowPersistence(img, "persistent")
	case OpNonPersistent:
		return allowPersistence(img, "non-persistent")
	case OpRename, OpUpdate:
		return nil
	case OpDelete:
		switch st {
		case StateReady, StateDisabled, StateError:
			return nil
		case StateLocked:
			return fmt.Errorf("image %d is LOCKED: wait for its import to finish (or fail) before deleting it", img.ID)
		case StateUsed, StateUsedPers, StateLockedUsed, StateLockedUsedPers:
			return fmt.Errorf("image %d is %s: it cannot be deleted while VMs use it", img.ID, describe(img))
		}
		return fmt.Errorf("image %d is %s: it cannot be deleted now", img.ID, describe(img))
	}
	return fmt.Errorf("unknown operation %q", op)
}

// allowPersistence checks a change of the persistent flag: a VM using the
// image was started with the old semantics (its own copy, or the image
// itself), so the flag cannot change under it.
func allowPersistence(img *schemas.Image, want string) error {
	switch State(img.State) {
	case StateLocked, StateReady, StateDisabled, StateError:
		return nil
	case StateUsed, StateUsedPers, StateLockedUsed, StateLockedUsedPers, StateClone:
		return fmt.Errorf("image %d is %s: it cannot be made %s while VMs use it", img.ID, describe(img), want)
	}
	return fmt.Errorf("image %d is %s: it cannot be made %s now", img.ID, img.State, want)
}

// describe renders a state with what makes it what it is, e.g. "USED by 2 VMs".
func describe(img *schemas.Image) string {
	switch st := State(img.State); st {
	case StateUsed, StateLockedUsed:
		return fmt.Sprintf("%s by %d %s", st, img.RVMs, plural(img.RVMs, "VM", "VMs"))
	case StateUsedPers, StateLockedUsedPers:
		return fmt.Sprintf("%s by a VM", st)
	case StateLocked:
		return "LOCKED (its import is still running)"
	default:
		return string(st)
	}
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
