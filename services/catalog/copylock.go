package catalog

import (
	"context"
	"slices"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// Copy locks (image-copy-lock): the launcher copies a VM's disk
// (disk-save-as) while the VM holds the disk's image. OpenNebula shows
// such an image LOCKED_USED (LOCKED_USED_PERS when persistent): VMs still
// use it, and nothing else may change it or take it until the copy ends.
//
//	USED      ──lock──► LOCKED_USED      ──unlock──► USED
//	USED_PERS ──lock──► LOCKED_USED_PERS ──unlock──► USED_PERS
//
// A launcher that dies between the two leaves the lock behind: the image
// reconciler (stuck.go) gives it back after Config.StuckAfter.

// copyLock handles image-copy-lock.
func (s *Service) copyLock(ctx context.Context, m *bus.Msg, req schemas.ImageCopyLock) error {
	img, err := s.changeLocks(ctx, m, req.ID, func(img *schemas.Image) error {
		return applyCopyLock(img, req.VMID, req.Locked, m.Delivered > 1)
	})
	if err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, schemas.EventCatalogImageCopyLocked, idToken(img.ID),
		schemas.ImageCopyLocked{ID: img.ID, VMID: req.VMID, Locked: req.Locked, State: img.State},
		causedBy(m.Envelope, schemas.EventCatalogImageCopyLocked)...)
	return err
}

// applyCopyLock applies a copy lock or unlock by vm to the record. A
// redelivered lock finds the image locked already and changes nothing.
func applyCopyLock(img *schemas.Image, vm int64, lock, redelivered bool) error {
	if !slices.Contains(img.VMs, vm) {
		return refuse("image %d is not held by VM %d (%s): only the VM's own disk can be copied while it runs", img.ID, vm, describe(img))
	}
	st := State(img.State)
	if !lock {
		switch st {
		case StateLockedUsed:
			return transition(img, StateUsed)
		case StateLockedUsedPers:
			return transition(img, StateUsedPers)
		}
		return errNoChange
	}
	switch st {
	case StateUsed:
		return transition(img, StateLockedUsed)
	case StateUsedPers:
		return transition(img, StateLockedUsedPers)
	case StateLockedUsed, StateLockedUsedPers:
		if redelivered {
			return errNoChange
		}
		return &refusal{lockedCode(img, explain("image {id} is {state}: another copy of a disk made from it (save-as) or a save is running; try again once it is done", img))}
	}
	return refuse("image %d is %s: a VM's disk can be copied only while the image is USED or USED_PERS", img.ID, img.State)
}
