package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/vmtemplate"
)

// callCtx bounds one exchange with another service.
func (s *Service) callCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.cfg.CallTimeout)
}

// showImage asks the catalog for an image by ID or by name; uname, when
// given, must be the image's owner.
func (s *Service) showImage(ctx context.Context, id *int64, name, uname string) (*schemas.Image, error) {
	req := schemas.CatalogShowRequest{ID: id}
	what := ""
	if id != nil {
		what = fmt.Sprintf("image %d", *id)
	} else {
		req.Name, what = name, fmt.Sprintf("image %q", name)
	}
	ctx, cancel := s.callCtx(ctx)
	defer cancel()
	img, err := bus.Ask(ctx, s.bus, schemas.QryCatalogShow, req)
	if err != nil {
		if bus.IsNotFound(err) {
			return nil, fmt.Errorf("%s does not exist in the catalog", what)
		}
		return nil, fmt.Errorf("%s: ask the catalog: %w", what, err)
	}
	if id == nil && uname != "" && img.User != "" && img.User != uname {
		return nil, fmt.Errorf("image %q of user %s does not exist (the catalog's is user %s's)", name, uname, img.User)
	}
	return &img, nil
}

// showFile resolves a $FILE[…] reference to a file image of one of types.
func (s *Service) showFile(ctx context.Context, ref vmtemplate.FileRef, attr string, types ...schemas.ImageType) (*schemas.Image, error) {
	img, err := s.showImage(ctx, ref.ImageID, ref.Image, ref.ImageUname)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", attr, err)
	}
	if !slices.Contains(types, img.Type) {
		return nil, fmt.Errorf("%s: image %d (%s) is a %s image, want %s", attr, img.ID, img.Name, img.Type, typeList(types))
	}
	if err := usable(img); err != nil {
		return nil, fmt.Errorf("%s: %w", attr, err)
	}
	return img, nil
}

func typeList(types []schemas.ImageType) string {
	out := ""
	for i, t := range types {
		switch {
		case i == 0:
		case i == len(types)-1:
			out += " or "
		default:
			out += ", "
		}
		out += string(t)
	}
	return out
}

// usable refuses images a VM cannot take, with the reason. A USED_PERS
// image passes: image-use refuses it naming the VM that holds it.
func usable(img *schemas.Image) error {
	switch img.State {
	case "READY", "USED", "USED_PERS":
		return nil
	case "DISABLED":
		return fmt.Errorf("image %d (%s) is DISABLED: enable it to use it", img.ID, img.Name)
	case "ERROR":
		return fmt.Errorf("image %d (%s) is in ERROR: %s", img.ID, img.Name, img.Error)
	case "LOCKED", "LOCKED_USED", "LOCKED_USED_PERS":
		return fmt.Errorf("image %d (%s) is %s: its data is being written; try again when it is READY", img.ID, img.Name, img.State)
	}
	return fmt.Errorf("image %d (%s) is %s: it cannot be used", img.ID, img.Name, img.State)
}

// lock takes image id for the VM with the catalog's image-use. The image is
// recorded in the VM's locks first, so that whatever happens next releases
// it.
func (s *Service) lock(ctx context.Context, vmID, imageID int64) error {
	rec, _, err := s.vms.Update(ctx, vmID, func(r *vmRecord) error {
		if slices.Contains(r.Run.Locks, imageID) {
			return kvstore.ErrNoChange
		}
		r.Run.Locks = append(r.Run.Locks, imageID)
		return nil
	})
	if err != nil {
		return err
	}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err = bus.Invoke(cctx, s.bus, schemas.CmdCatalogImageUse, schemas.ImageUse{ID: imageID, VMID: vmID, OnBehalfOf: rec.User})
	var ce *bus.CallError
	if errors.As(err, &ce) {
		return errors.New(ce.Message)
	}
	return err
}

// copyLock has the catalog show image id LOCKED_USED(_PERS) while the
// VM's disk made from it is copied (locked), or give it back (!locked).
func (s *Service) copyLock(ctx context.Context, vmID, imageID int64, locked bool) error {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	_, err := bus.Invoke(cctx, s.bus, schemas.CmdCatalogImageCopyLock, schemas.ImageCopyLock{ID: imageID, VMID: vmID, Locked: locked})
	var ce *bus.CallError
	if errors.As(err, &ce) {
		return errors.New(ce.Message)
	}
	return err
}

// release lets image id go, saving a persistent disk's changes when save is
// set, and drops it from the VM's locks. It reports whether the catalog
// saved the changes.
func (s *Service) release(ctx context.Context, vmID, imageID int64, save *schemas.ImageSave) (bool, error) {
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	m, err := bus.Invoke(cctx, s.bus, schemas.CmdCatalogImageRelease, schemas.ImageRelease{ID: imageID, VMID: vmID, Save: save})
	var ce *bus.CallError
	if errors.As(err, &ce) {
		return false, fmt.Errorf("the catalog refused to release image %d: %s", imageID, ce.Message)
	}
	if err != nil {
		return false, fmt.Errorf("release image %d: %w", imageID, err)
	}
	var ans schemas.ImageReleased
	if err := json.Unmarshal(m.Data, &ans); err != nil {
		return false, fmt.Errorf("release image %d: %w", imageID, err)
	}
	_, _, err = s.vms.Update(ctx, vmID, func(r *vmRecord) error {
		i := slices.Index(r.Run.Locks, imageID)
		if i < 0 {
			return kvstore.ErrNoChange
		}
		r.Run.Locks = slices.Delete(r.Run.Locks, i, i+1)
		return nil
	})
	return ans.Saved, err
}
