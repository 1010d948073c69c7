package catalog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

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
	StateLocked:   {StateReady, StateError, StateLockedUsed, StateLockedUsedPers, StateDisabled},
	StateReady:    {StateUsed, StateUsedPers, StateDisabled, StateLocked, StateClone, StateDelete, StateError},
	StateUsed:     {StateReady, StateLockedUsed, StateClone, StateError},
	StateUsedPers: {StateReady, StateLockedUsedPers, StateError},
	// A DISABLED image is LOCKED while its blob is rewritten (key slots)
	// and given back DISABLED.
	StateDisabled:   {StateReady, StateDelete, StateLocked},
	StateError:      {StateDelete},
	StateDelete:     {},
	StateClone:      {StateReady, StateUsed, StateError},
	StateLockedUsed: {StateUsed, StateLocked, StateError},
	// A persistent image's changes are saved while its VM still holds it
	// (LOCKED_USED_PERS); saving and letting go is one write, so the image
	// never shows a VM that is gone.
	StateLockedUsedPers: {StateUsedPers, StateLocked, StateError, StateReady},
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
	OpUse           Op = "use"     // a VM takes the image (launcher)
	OpEncrypt       Op = "encrypt" // the image is read into a new LUKS image
	OpSlots         Op = "slots"   // crypto-luks rewrites a LUKS image's key slots
)

// Allow says whether op may be applied to img, and if not, why, in words a
// person can act on. It is the one place where the rules of the life cycle
// that depend on more than the state (type, running VMs) live.
func Allow(op Op, img *schemas.Image) error {
	st := State(img.State)
	switch op {
	case OpUse:
		return allowUse(img)
	case OpEncrypt:
		return allowEncrypt(img)
	case OpSlots:
		return allowSlots(img)
	}
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

// allowUse says whether a VM that does not hold img yet may take it. File
// images are taken in any usable state without being locked; whether the
// image is persistent decides between sharing and one VM at a time.
func allowUse(img *schemas.Image) error {
	id := img.ID
	switch st := State(img.State); st {
	case StateReady:
		return nil
	case StateUsed:
		if !img.Persistent {
			return nil
		}
		return fmt.Errorf("image %d is persistent but USED by %d VMs: it cannot be used until they are gone", id, img.RVMs)
	case StateUsedPers, StateLockedUsedPers:
		return fmt.Errorf("image %d is persistent and in use by %s: a persistent image is used by one VM at a time; terminate that VM first or use a non-persistent image", id, holder(img))
	case StateDisabled:
		return fmt.Errorf("image %d is DISABLED: enable it before a VM can use it", id)
	case StateLocked:
		return fmt.Errorf("image %d is LOCKED (its data is still being written): a VM can use it once it is READY", id)
	case StateLockedUsed:
		return fmt.Errorf("image %d is LOCKED_USED (an operation holds it): try again once it is USED or READY", id)
	case StateError:
		return fmt.Errorf("image %d is in ERROR (%s): no VM can use it; delete it and import it again", id, img.Error)
	case StateDelete:
		return fmt.Errorf("image %d is being deleted: no VM can use it", id)
	case StateClone:
		return fmt.Errorf("image %d is being cloned: a VM can use it once it is READY", id)
	}
	return fmt.Errorf("image %d is %s: no VM can use it", id, img.State)
}

// allowEncrypt says whether img may be the source of a LUKS encryption:
// its data must be complete and must not change while crypto-luks reads it.
func allowEncrypt(img *schemas.Image) error {
	id := img.ID
	if IsFileType(img.Type) {
		return fmt.Errorf("image %d is a %s file: only disk images (OS, CDROM, DATABLOCK) can be encrypted", id, img.Type)
	}
	if img.Format == schemas.DiskFormatLUKS {
		return fmt.Errorf("image %d is LUKS-encrypted already", id)
	}
	switch st := State(img.State); st {
	case StateReady, StateUsed, StateDisabled:
		if img.Source == "" {
			return fmt.Errorf("image %d has no stored data to encrypt", id)
		}
		return nil
	case StateUsedPers:
		return fmt.Errorf("image %d is in use by %s (persistent): encrypt it when the VM is done", id, holder(img))
	case StateLockedUsedPers:
		return fmt.Errorf("image %d is LOCKED_USED_PERS (the changes of %s are being saved): encrypt it when the VM is done", id, holder(img))
	case StateLocked, StateLockedUsed:
		return fmt.Errorf("image %d is %s (its data is being written): encrypt it once it is READY", id, st)
	case StateError:
		return fmt.Errorf("image %d is in ERROR (%s): it has no usable data to encrypt", id, img.Error)
	case StateDelete:
		return fmt.Errorf("image %d is being deleted: it cannot be encrypted", id)
	case StateClone:
		return fmt.Errorf("image %d is being cloned: encrypt it once it is READY", id)
	}
	return fmt.Errorf("image %d is %s: it cannot be encrypted now", id, img.State)
}

// allowSlots says whether crypto-luks may rewrite img's blob to change its
// key slots: a LUKS image no VM uses, READY or DISABLED.
func allowSlots(img *schemas.Image) error {
	id, name := img.ID, img.Name
	switch st := State(img.State); {
	case img.Format != schemas.DiskFormatLUKS || img.Attributes[schemas.AttrLUKSSecret] == "":
		return fmt.Errorf("image %d (%s) is not a LUKS image (format %q, no %s attribute)", id, name, img.Format, schemas.AttrLUKSSecret)
	case st == StateUsed || st == StateUsedPers || st == StateLockedUsed || st == StateLockedUsedPers:
		return fmt.Errorf("image %d (%s) is in use (%s by %s): change its key slots when no VM uses it", id, name, st, holder(img))
	case st != StateReady && st != StateDisabled:
		return fmt.Errorf("image %d (%s) is %s: key slots can only change on a READY or DISABLED image", id, name, st)
	case img.Source == "":
		return fmt.Errorf("image %d (%s) has no blob", id, name)
	}
	return nil
}

// holder names the VM(s) holding an image, e.g. "VM 5".
func holder(img *schemas.Image) string {
	switch len(img.VMs) {
	case 0:
		return "a VM"
	case 1:
		return fmt.Sprintf("VM %d", img.VMs[0])
	}
	parts := make([]string, len(img.VMs))
	for i, v := range img.VMs {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return "VMs " + strings.Join(parts, ", ")
}

// describe renders a state with what makes it what it is, e.g. "USED by 2 VMs".
func describe(img *schemas.Image) string {
	switch st := State(img.State); st {
	case StateUsed, StateLockedUsed:
		return fmt.Sprintf("%s by %d %s", st, img.RVMs, plural(img.RVMs, "VM", "VMs"))
	case StateUsedPers, StateLockedUsedPers:
		return fmt.Sprintf("%s by %s", st, holder(img))
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

// transition moves img to state to, refusing what the life cycle forbids.
func transition(img *schemas.Image, to State) error {
	from := State(img.State)
	if from == to {
		return errNoChange
	}
	if !from.CanTransition(to) {
		return refuse("image %d is %s: it cannot become %s", img.ID, describe(img), to)
	}
	img.State = schemas.ImageState(to)
	if to != StateError {
		img.Error = ""
	}
	return nil
}
