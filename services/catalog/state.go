package catalog

import (
	"errors"
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
	OpUse           Op = "use"      // a VM takes the image (launcher)
	OpEncrypt       Op = "encrypt"  // the image is read into a new LUKS image
	OpSlots         Op = "slots"    // crypto-luks rewrites a LUKS image's key slots
	OpClone         Op = "clone"    // the image is copied into a new one (clone.go)
	OpSnapshot      Op = "snapshot" // the converter reverts, deletes or flattens a snapshot
)

// Allow says whether op may be applied to img, and if not, why, in words a
// person can act on. It is the one place where the rules of the life cycle
// that depend on more than the state (type, running VMs) live: rules holds
// them, one per operation.
func Allow(op Op, img *schemas.Image) error {
	r, ok := rules[op]
	if !ok {
		return fmt.Errorf("unknown operation %q", op)
	}
	st := State(img.State)
	if r.change && st == StateDelete {
		return explain("image {id} is being deleted: it cannot be changed", img)
	}
	if r.fits != nil {
		if err := r.fits(img); err != nil {
			return err
		}
	}
	if r.allow != nil && !slices.Contains(r.allow, st) {
		return explain(r.refusal(st), img)
	}
	if r.ready != nil {
		return r.ready(img)
	}
	return nil
}

// A rule is what one operation asks of an image, checked in this order.
type rule struct {
	// change: the operation changes the image, which an image being
	// deleted refuses before anything else.
	change bool
	// fits refuses an image the operation does not apply to, whatever its
	// state (nil: any image).
	fits func(*schemas.Image) error
	// allow lists the states the operation may start from (nil: any).
	allow []State
	// refuse says why the states it names refuse the operation, and other
	// why any other state does; the words go through explain.
	refuse []refused
	other  string
	// ready refuses an image in an allowed state that still lacks what
	// the operation needs (nil: nothing more).
	ready func(*schemas.Image) error
}

// refused is why the states in refuse the operation.
type refused struct {
	in  []State
	why string
}

// refusal is the words of the rule for an image in state st.
func (r rule) refusal(st State) string {
	for _, f := range r.refuse {
		if slices.Contains(f.in, st) {
			return f.why
		}
	}
	return r.other
}

// inUse are the states in which VMs hold an image.
var inUse = []State{StateUsed, StateUsedPers, StateLockedUsed, StateLockedUsedPers}

// rules is the table Allow reads.
var rules = map[Op]rule{
	OpEnable: {
		change: true,
		allow:  []State{StateDisabled, StateReady}, // enabling a READY image changes nothing
		refuse: []refused{
			{[]State{StateError}, "image {id} is in ERROR ({error}): it cannot be enabled; delete it and import it again"},
		},
		other: "image {id} is {described}: only a DISABLED image can be enabled",
	},
	OpDisable: {
		change: true,
		allow:  []State{StateReady, StateDisabled},
		refuse: []refused{{inUse, "image {id} is {described}: it cannot be disabled while VMs use it"}},
		other:  "image {id} is {described}: only a READY image can be disabled",
	},
	OpPersistent:    persistence("persistent", notFile),
	OpNonPersistent: persistence("non-persistent", flattenFirst),
	OpRename:        {change: true},
	OpUpdate:        {change: true},
	OpDelete: {
		change: true,
		allow:  []State{StateReady, StateDisabled, StateError},
		refuse: []refused{
			{[]State{StateLocked}, "image {id} is LOCKED: wait for its import to finish (or fail) before deleting it"},
			{inUse, "image {id} is {described}: it cannot be deleted while VMs use it"},
		},
		other: "image {id} is {described}: it cannot be deleted now",
	},
	// A VM that does not hold the image yet takes it. File images are
	// taken in any usable state without being locked; whether the image
	// is persistent decides between sharing and one VM at a time.
	OpUse: {
		allow: []State{StateReady, StateUsed},
		refuse: []refused{
			{[]State{StateUsedPers, StateLockedUsedPers}, "image {id} is persistent and in use by {holder}: a persistent image is used by one VM at a time; terminate that VM first or use a non-persistent image"},
			{[]State{StateDisabled}, "image {id} is DISABLED: enable it before a VM can use it"},
			{[]State{StateLocked}, "image {id} is LOCKED (its data is still being written): a VM can use it once it is READY"},
			{[]State{StateLockedUsed}, "image {id} is LOCKED_USED (an operation holds it): try again once it is USED or READY"},
			{[]State{StateError}, "image {id} is in ERROR ({error}): no VM can use it; delete it and import it again"},
			{[]State{StateDelete}, "image {id} is being deleted: no VM can use it"},
			{[]State{StateClone}, "image {id} is being cloned: a VM can use it once it is READY"},
		},
		other: "image {id} is {state}: no VM can use it",
		ready: func(img *schemas.Image) error {
			if State(img.State) == StateUsed && img.Persistent {
				return explain("image {id} is persistent but USED by {rvms} VMs: it cannot be used until they are gone", img)
			}
			return nil
		},
	},
	// The image is the source of a LUKS encryption: its data must be
	// complete and must not change while crypto-luks reads it.
	OpClone: cloneRule,
	OpEncrypt: {
		fits: func(img *schemas.Image) error {
			if IsFileType(img.Type) {
				return explain("image {id} is a {type} file: only disk images (OS, CDROM, DATABLOCK) can be encrypted", img)
			}
			if img.Format == schemas.DiskFormatLUKS {
				return explain("image {id} is LUKS-encrypted already", img)
			}
			return nil
		},
		allow: []State{StateReady, StateUsed, StateDisabled},
		refuse: []refused{
			{[]State{StateUsedPers}, "image {id} is in use by {holder} (persistent): encrypt it when the VM is done"},
			{[]State{StateLockedUsedPers}, "image {id} is LOCKED_USED_PERS (the changes of {holder} are being saved): encrypt it when the VM is done"},
			{[]State{StateLocked, StateLockedUsed}, "image {id} is {state} (its data is being written): encrypt it once it is READY"},
			{[]State{StateError}, "image {id} is in ERROR ({error}): it has no usable data to encrypt"},
			{[]State{StateDelete}, "image {id} is being deleted: it cannot be encrypted"},
			{[]State{StateClone}, "image {id} is being cloned: encrypt it once it is READY"},
		},
		other: "image {id} is {state}: it cannot be encrypted now",
		ready: stored("image {id} has no stored data to encrypt"),
	},
	// The converter rewrites a persistent image's blob from one of its
	// snapshots (OpenNebula: READY, OS or DATABLOCK; LOCKED meanwhile).
	OpSnapshot: {
		change: true,
		fits: func(img *schemas.Image) error {
			if img.Type != schemas.ImageTypeOS && img.Type != schemas.ImageTypeDatablock {
				return explain("image {id} is a {type} image: only OS and DATABLOCK images have snapshots", img)
			}
			if !hasSnapshots(*img) {
				return explain("image {id} ({name}) has no snapshots: they come from the disk-snapshot of a VM that uses it persistently", img)
			}
			return nil
		},
		allow: []State{StateReady},
		refuse: []refused{
			{inUse, "image {id} is {described}: a snapshot operation needs a READY image no VM uses; while its VM runs, use vm disk-snapshot-revert or -delete"},
			{[]State{StateLocked}, "image {id} is LOCKED (an operation is writing its blob): try again once it is READY"},
		},
		other: "image {id} is {state}: a snapshot operation needs a READY image",
		ready: stored("image {id} ({name}) has no blob"),
	},
	// crypto-luks rewrites the image's blob to change its key slots: a
	// LUKS image no VM uses, READY or DISABLED.
	OpSlots: {
		fits: func(img *schemas.Image) error {
			if img.Format != schemas.DiskFormatLUKS || img.Attributes[schemas.AttrLUKSSecret] == "" {
				return fmt.Errorf("image %d (%s) is not a LUKS image (format %q, no %s attribute)", img.ID, img.Name, img.Format, schemas.AttrLUKSSecret)
			}
			return nil
		},
		allow:  []State{StateReady, StateDisabled},
		refuse: []refused{{inUse, "image {id} ({name}) is in use ({state} by {holder}): change its key slots when no VM uses it"}},
		other:  "image {id} ({name}) is {state}: key slots can only change on a READY or DISABLED image",
		ready:  stored("image {id} ({name}) has no blob"),
	},
}

// persistence is the rule of a change of the persistent flag (want is what
// the image is to become): a VM using the image was started with the old
// semantics (its own copy, or the image itself), so the flag cannot change
// under it.
func persistence(want string, fits func(*schemas.Image) error) rule {
	return rule{
		change: true,
		fits:   fits,
		allow:  []State{StateLocked, StateReady, StateDisabled, StateError},
		refuse: []refused{
			{append([]State{StateClone}, inUse...), "image {id} is {described}: it cannot be made " + want + " while VMs use it"},
		},
		other: "image {id} is {state}: it cannot be made " + want + " now",
	}
}

// hasSnapshots reports whether img holds snapshots (snapshotsaga.go): such
// an image cannot be cloned or made non-persistent until flattened.
func hasSnapshots(img schemas.Image) bool { return len(img.Snapshots) > 0 }

// flattenFirst refuses to make an image with snapshots non-persistent:
// its snapshots live in its blob, and a non-persistent image is shared
// read-only.
func flattenFirst(img *schemas.Image) error {
	if hasSnapshots(*img) {
		return fmt.Errorf("image %d has %d snapshots: flatten first (slipway image snapshot-flatten %d SNAPSHOT_ID keeps one state and removes them all), then make it non-persistent", img.ID, len(img.Snapshots), img.ID)
	}
	return nil
}

// notFile refuses a file image (KERNEL, RAMDISK, CONTEXT): it cannot be
// persistent.
func notFile(img *schemas.Image) error {
	if IsFileType(img.Type) {
		return explain("image {id} is a {type} file: file images cannot be persistent", img)
	}
	return nil
}

// stored refuses, in words why, an image that has no blob.
func stored(why string) func(*schemas.Image) error {
	return func(img *schemas.Image) error {
		if img.Source == "" {
			return explain(why, img)
		}
		return nil
	}
}

// explain renders a rule's words about img: {id}, {name}, {type}, {state},
// {described} (describe), {holder}, {rvms} and {error} stand for what they
// say. The words are read once, so a name or an error that looks like one
// of them stays as it is.
func explain(words string, img *schemas.Image) error {
	return errors.New(strings.NewReplacer(
		"{id}", strconv.FormatInt(img.ID, 10),
		"{name}", img.Name,
		"{type}", string(img.Type),
		"{state}", string(img.State),
		"{described}", describe(img),
		"{holder}", holder(img),
		"{rvms}", strconv.FormatInt(img.RVMs, 10),
		"{error}", img.Error,
	).Replace(words))
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
