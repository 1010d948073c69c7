package catalog

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
)

// Image locks: the launcher takes an image for a VM with image-use and
// lets it go with image-release. Both are answered by an event caused by
// the command (image-used / image-released, or failed), so the launcher can
// use bus.Call. The VMs holding an image are in its record (vms); rvms is
// their number. Every change is a compare-and-set on the record, so two
// VMs racing for a persistent image cannot both win.

// Events answering image-use and image-release.
const (
	EvtImageUsed     = schemas.EventCatalogImageUsed
	EvtImageReleased = schemas.EventCatalogImageReleased
)

// use handles image-use.
func (s *Service) use(ctx context.Context, m *bus.Msg, req schemas.ImageUse) error {
	img, err := s.changeLocks(ctx, m, req.ID, func(img *schemas.Image) error { return take(img, req.VMID) })
	if err != nil {
		return err
	}
	_, err = s.bus.Event(ctx, EvtImageUsed, idToken(img.ID),
		schemas.ImageUsed{ID: img.ID, VMID: req.VMID, State: img.State, RVMs: img.RVMs},
		causedBy(m.Envelope, EvtImageUsed)...)
	return err
}

// take applies image-use to the record: a VM that holds the image already
// changes nothing; a file image is not locked (OpenNebula leaves its
// state alone); otherwise the image becomes USED (shared) or USED_PERS
// (one VM) and the VM is added to vms.
func take(img *schemas.Image, vm int64) error {
	if slices.Contains(img.VMs, vm) {
		return errNoChange
	}
	if err := Allow(OpUse, img); err != nil {
		return &refusal{lockedCode(img, err)}
	}
	if IsFileType(img.Type) {
		return errNoChange
	}
	to := StateUsed
	if img.Persistent {
		to = StateUsedPers
	}
	if State(img.State) != to {
		if err := transition(img, to); err != nil {
			return err
		}
	}
	setVMs(img, append(img.VMs, vm))
	return nil
}

// setVMs sets the VMs holding img and keeps rvms their number.
func setVMs(img *schemas.Image, vms []int64) {
	img.VMs = vms
	if len(vms) == 0 {
		img.VMs = nil
	}
	img.RVMs = int64(len(vms))
}

// release handles image-release.
func (s *Service) release(ctx context.Context, m *bus.Msg, req schemas.ImageRelease) error {
	if req.Save != nil {
		return s.releaseSaving(ctx, m, req)
	}
	img, err := s.changeLocks(ctx, m, req.ID, func(img *schemas.Image) error { return drop(img, req.VMID) })
	if err != nil {
		return err
	}
	return s.emitReleased(ctx, m, img, req.VMID, false)
}

// changeLocks applies a use or release (take or drop) to image id and
// publishes what it changed: the state, if it changed, and the record
// (vms, rvms), so that every change of an image is an event and watchers
// (slipway image top) see RVMS move.
func (s *Service) changeLocks(ctx context.Context, m *bus.Msg, id int64, apply func(*schemas.Image) error) (*schemas.Image, error) {
	var from State
	img, changed, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
		from = State(img.State)
		return apply(img)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, refuse("image %d does not exist", id)
	}
	if err != nil || !changed {
		return img, err
	}
	if State(img.State) != from {
		if err := s.emitState(ctx, img.ID, from, State(img.State), "", causedBy(m.Envelope, schemas.EventCatalogStateChanged)); err != nil {
			return nil, err
		}
	}
	return img, s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, schemas.EventCatalogImageUpdated))
}

// drop applies image-release without save to the record: a VM that does
// not hold the image changes nothing; the last VM to go makes it READY.
func drop(img *schemas.Image, vm int64) error {
	i := slices.Index(img.VMs, vm)
	if i < 0 {
		return errNoChange
	}
	switch State(img.State) {
	case StateLockedUsed, StateLockedUsedPers:
		return refuse("image %d is %s (an operation on it is still running, such as saving a VM's changes): release it again once that is done", img.ID, img.State)
	}
	setVMs(img, slices.Delete(slices.Clone(img.VMs), i, i+1))
	// A source being cloned stays CLONE: its clones' end gives it back.
	if len(img.VMs) == 0 && State(img.State) != StateClone {
		return transition(img, StateReady)
	}
	return nil
}

func (s *Service) emitReleased(ctx context.Context, m *bus.Msg, img *schemas.Image, vm int64, saved bool) error {
	_, err := s.bus.Event(ctx, EvtImageReleased, idToken(img.ID),
		schemas.ImageReleased{ID: img.ID, VMID: vm, State: img.State, RVMs: img.RVMs, Saved: saved},
		causedBy(m.Envelope, EvtImageReleased)...)
	return err
}

// releaseSaving keeps a persistent image's changes, then releases it:
//
//	USED_PERS ──lock──► LOCKED_USED_PERS ──staged disk checked, copied over
//	the blob (server side), record updated, VM gone──► READY
//
// Each step can run again: a redelivery finds the image LOCKED_USED_PERS
// by the same VM and carries on; once the VM is gone, the answer says
// whether the image holds the saved disk. The staged object is deleted at
// the end (or when it is refused), so nothing is left in the upload bucket.
func (s *Service) releaseSaving(ctx context.Context, m *bus.Msg, req schemas.ImageRelease) error {
	save := req.Save
	if err := s.locations().CheckSavedDisk(save.Source, req.VMID); err != nil {
		return refuse("%v", err)
	}
	img, held, err := s.lockForSave(ctx, m, req)
	if isRefusal(err) {
		// The staged disk was handed over: it goes either way.
		if derr := s.deleteURL(ctx, save.Source); derr != nil {
			return derr
		}
	}
	if err != nil {
		return err
	}
	if !held {
		// Not (or no longer) this VM's: nothing to save. A redelivery
		// after the save finds the saved disk in the record.
		if err := s.deleteURL(ctx, save.Source); err != nil {
			return err
		}
		saved := img.SHA256 == save.SHA256 && img.Format == save.Format
		return s.emitReleased(ctx, m, img, req.VMID, saved)
	}
	if reason := checkSavedSnapshots(img, *save); reason != "" {
		return s.refuseSave(ctx, m, img.ID, req.VMID, save.Source, reason)
	}
	if reason, err := s.checkStaged(ctx, *save); err != nil {
		return err
	} else if reason != "" {
		return s.refuseSave(ctx, m, img.ID, req.VMID, save.Source, reason)
	}
	return s.commitSave(ctx, m, img, req)
}

// lockForSave moves the image from USED_PERS to LOCKED_USED_PERS for the
// copy. held is false when the VM does not hold the image.
func (s *Service) lockForSave(ctx context.Context, m *bus.Msg, req schemas.ImageRelease) (img *schemas.Image, held bool, err error) {
	img, changed, err := s.images.Update(ctx, req.ID, func(img *schemas.Image) error {
		held = slices.Contains(img.VMs, req.VMID)
		switch {
		case !held:
			return errNoChange
		case !img.Persistent:
			return refuse("image %d is not persistent: a VM's changes to it are discarded, there is nothing to save (release it without save)", img.ID)
		case State(img.State) == StateLockedUsedPers:
			return errNoChange // a redelivery: the save is under way
		}
		return transition(img, StateLockedUsedPers)
	})
	if errors.Is(err, ErrNotFound) {
		return nil, false, refuse("image %d does not exist", req.ID)
	}
	if err != nil {
		return nil, false, err
	}
	if changed {
		if err := s.emitState(ctx, img.ID, StateUsedPers, StateLockedUsedPers, "", causedBy(m.Envelope, "save/"+schemas.EventCatalogStateChanged)); err != nil {
			return nil, false, err
		}
	}
	return img, held, nil
}

// checkSavedSnapshots says why the snapshots a save reports cannot be the
// image's ("" when they can): a broken tree, or snapshots in a disk that
// cannot hold them.
func checkSavedSnapshots(img *schemas.Image, save schemas.ImageSave) string {
	if len(save.Snapshots) == 0 {
		return ""
	}
	if save.Format != schemas.DiskFormatQcow2 {
		return fmt.Sprintf("the saved disk is %s but reports %d snapshots: internal snapshots need qcow2", save.Format, len(save.Snapshots))
	}
	if img.Type != schemas.ImageTypeOS && img.Type != schemas.ImageTypeDatablock {
		return fmt.Sprintf("image %d is a %s image: only OS and DATABLOCK images have snapshots", img.ID, img.Type)
	}
	if err := snapshots.Tree(save.Snapshots).Check(); err != nil {
		return fmt.Sprintf("the saved disk's snapshots: %v", err)
	}
	return ""
}

// checkStaged says why the staged disk is not what save describes ("" when
// it is); err is for failures worth retrying.
func (s *Service) checkStaged(ctx context.Context, save schemas.ImageSave) (reason string, err error) {
	bucket, key, _ := blob.ParseURL(save.Source)
	got, err := s.readBlob(ctx, bucket, key, save.Size, save.S3Checksum)
	switch {
	case err != nil:
		return "", err
	case got.missing:
		return fmt.Sprintf("the saved disk %s does not exist", save.Source), nil
	case got.size != save.Size:
		return fmt.Sprintf("the saved disk %s has %d bytes, but %d were reported", save.Source, got.size, save.Size), nil
	case !digestsAgree(save.SHA256, save.S3Checksum):
		return fmt.Sprintf("the saved disk %s was reported with SHA-256 %s and S3 checksum %s, which are not the same digest", save.Source, save.SHA256, save.S3Checksum), nil
	case got.checksumDiffers(save.S3Checksum):
		return fmt.Sprintf("the saved disk %s has S3 checksum %s, but %s was reported", save.Source, got.s3Checksum, save.S3Checksum), nil
	case got.vanished:
		return fmt.Sprintf("the saved disk %s vanished while its digest was checked", save.Source), nil
	case got.sha256 != "" && got.sha256 != save.SHA256:
		return fmt.Sprintf("the saved disk %s has SHA-256 %s, but %s was reported", save.Source, got.sha256, save.SHA256), nil
	}
	return "", nil
}

// refuseSave gives the lock back (the VM still holds the image, its blob
// unchanged), deletes the bad staged disk and refuses the release.
func (s *Service) refuseSave(ctx context.Context, m *bus.Msg, id, vm int64, staged, reason string) error {
	_, changed, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
		if State(img.State) != StateLockedUsedPers {
			return errNoChange
		}
		return transition(img, StateUsedPers)
	})
	if err != nil {
		return err
	}
	if changed {
		if err := s.emitState(ctx, id, StateLockedUsedPers, StateUsedPers, "", causedBy(m.Envelope, "save-refused/"+schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
	}
	if err := s.deleteURL(ctx, staged); err != nil {
		return err
	}
	return refuse("image %d: %s; nothing was saved and VM %d still holds the image", id, reason, vm)
}

// commitSave copies the staged disk over the image's blob, records it and
// lets the VM go, then cleans up and answers.
func (s *Service) commitSave(ctx context.Context, m *bus.Msg, img *schemas.Image, req schemas.ImageRelease) error {
	save := req.Save
	ds, err := s.datastore(ctx, img.Datastore)
	if err != nil {
		return fmt.Errorf("image %d: %w", img.ID, err)
	}
	// The key follows the format, as for an import; the same format
	// overwrites the blob in place (atomically: readers see the old disk
	// or the new one).
	dest := blob.URL(ds.Bucket, imagePrefix(img.ID)+"disk."+string(save.Format))
	srcBucket, srcKey, _ := blob.ParseURL(save.Source)
	_, dstKey, _ := blob.ParseURL(dest)
	if _, err := s.blobs.Copy(ctx, srcBucket, srcKey, ds.Bucket, dstKey); err != nil {
		return fmt.Errorf("image %d: save the changes of VM %d: %w", img.ID, req.VMID, err)
	}
	old := img.Source
	after, changed, err := s.images.Update(ctx, img.ID, func(img *schemas.Image) error {
		if State(img.State) != StateLockedUsedPers || !slices.Contains(img.VMs, req.VMID) {
			return errNoChange
		}
		img.Format, img.Size, img.StoredSize, img.SHA256, img.Source = save.Format, save.VirtualSize, save.Size, save.SHA256, dest
		// The disk's snapshots live in the saved blob: they become the
		// image's (none: the disk has none). The counter is the higher of
		// the image's and the disk's, so no ID either gave comes back.
		img.NextSnapshot = max(snapshots.Tree(img.Snapshots).Next(img.NextSnapshot), snapshots.Tree(save.Snapshots).Next(save.NextSnapshot))
		img.Snapshots = save.Snapshots
		setVMs(img, slices.DeleteFunc(slices.Clone(img.VMs), func(v int64) bool { return v == req.VMID }))
		return transition(img, StateReady)
	})
	if err != nil {
		return err
	}
	if changed {
		if err := s.emitState(ctx, img.ID, StateLockedUsedPers, StateReady, "", causedBy(m.Envelope, "saved/"+schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
		if err := s.emitImage(ctx, schemas.EventCatalogImageUpdated, after, causedBy(m.Envelope, "saved/"+schemas.EventCatalogImageUpdated)); err != nil {
			return err
		}
	}
	if err := s.deleteURL(ctx, save.Source); err != nil {
		return err
	}
	if old != "" && old != dest {
		if err := s.deleteURL(ctx, old); err != nil {
			return err
		}
	}
	return s.emitReleased(ctx, m, after, req.VMID, after.SHA256 == save.SHA256)
}
