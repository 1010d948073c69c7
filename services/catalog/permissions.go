package catalog

// chmod, chown and chgrp of images. authorize has already checked the
// level the schemas give them (manage for chmod, admin for chown and
// chgrp); chmod of the admin bits needs admin too, as in OpenNebula.

import (
	"context"
	"errors"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// permissionCommand runs chmod, chown and chgrp; ok is false for any other
// command.
func (s *Service) permissionCommand(ctx context.Context, m *bus.Msg) (res processed, ok bool, err error) {
	switch m.Name {
	case schemas.CommandCatalogImageChmod:
		var req schemas.ImageChmod
		res, err = decodeAndRun(m, &req, &req.ID, func() error { return s.chmod(ctx, m, req) })
	case schemas.CommandCatalogImageChown:
		var req schemas.ImageChown
		res, err = decodeAndRun(m, &req, &req.ID, func() error { return s.chown(ctx, m, req.ID, req.User, req.Group) })
	case schemas.CommandCatalogImageChgrp:
		var req schemas.ImageChgrp
		res, err = decodeAndRun(m, &req, &req.ID, func() error { return s.chown(ctx, m, req.ID, "", req.Group) })
	default:
		return processed{}, false, nil
	}
	return res, true, err
}

func (s *Service) chmod(ctx context.Context, m *bus.Msg, req schemas.ImageChmod) error {
	perms, err := acl.ParseOctal(req.Permissions)
	if err != nil {
		return refuse("%w", err)
	}
	img, err := s.images.existing(ctx, req.ID)
	if err != nil {
		return err
	}
	if acl.ChmodLevel(imageObject(img).Perms, perms) == acl.Admin {
		if err := callerOf(ctx).may(img, acl.Admin, m.Name+" of the admin bits"); err != nil {
			return err
		}
	}
	return s.updateImage(ctx, m, req.ID, func(img *schemas.Image) error {
		if img.Permissions == perms.Octal() {
			return errNoChange
		}
		img.Permissions = perms.Octal()
		return nil
	})
}

// chown gives image id to user (unless "") and group (unless ""). The new
// owner must exist and must not already hold an image of that name.
func (s *Service) chown(ctx context.Context, m *bus.Msg, id int64, user, group string) error {
	if user != "" {
		if _, err := named(ctx, s.users.users, "user", user); err != nil {
			return err
		}
	}
	if group != "" {
		if _, err := named(ctx, s.users.groups, "group", group); err != nil {
			return err
		}
	}
	img, err := s.images.existing(ctx, id)
	if err != nil {
		return err
	}
	if user != "" && user != img.User {
		if err := s.images.claimName(ctx, user, img.Name, id); err != nil {
			return err
		}
	}
	old := img.User
	if err := s.updateImage(ctx, m, id, func(img *schemas.Image) error {
		if (user == "" || img.User == user) && (group == "" || img.Group == group) {
			return errNoChange
		}
		if user != "" {
			img.User = user
		}
		if group != "" {
			img.Group = group
		}
		return nil
	}); err != nil {
		return err
	}
	if user != "" && user != old {
		return s.images.releaseName(ctx, old, img.Name, id)
	}
	return nil
}

// updateImage changes image id with fn and announces the record, changed
// or not: the sender waits for the answer either way (its ID is the
// command's, so a redelivery's copy is dropped).
func (s *Service) updateImage(ctx context.Context, m *bus.Msg, id int64, fn func(*schemas.Image) error) error {
	img, _, err := s.images.Update(ctx, id, fn)
	if errors.Is(err, ErrNotFound) {
		return refuse("image %d does not exist", id)
	}
	if err != nil {
		return err
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, causedBy(m.Envelope, schemas.EventCatalogImageUpdated))
}
