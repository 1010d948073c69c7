package catalog

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// Image locks (OpenNebula's `oneimage lock`): image-lock and image-unlock
// record and drop an image's lock; access.go's authorize enforces it
// (lockRefuses), once for every command.

// lockImage handles image-lock: the lock names the sender (the user, or
// the service acting alone) and the time.
func (s *Service) lockImage(ctx context.Context, m *bus.Msg, req schemas.ImageLockRequest) error {
	level := req.Level
	if level == "" {
		level = schemas.LockLevelUse
	}
	c := callerOf(ctx)
	by := c.user.Name
	if by == "" {
		by = c.service
	}
	img, changed, err := s.setLock(ctx, req.ID, func(img *schemas.Image) error {
		if img.Lock != nil && img.Lock.Level == level && img.Lock.LockedBy == by {
			return errNoChange
		}
		img.Lock = &schemas.ImageLock{Level: level, LockedBy: by, LockedAt: now()}
		return nil
	})
	if err != nil {
		return err
	}
	return s.updated(ctx, m, img, changed)
}

// unlockImage handles image-unlock.
func (s *Service) unlockImage(ctx context.Context, m *bus.Msg, id int64) error {
	img, changed, err := s.setLock(ctx, id, func(img *schemas.Image) error {
		if img.Lock == nil {
			return errNoChange
		}
		img.Lock = nil
		return nil
	})
	if err != nil {
		return err
	}
	return s.updated(ctx, m, img, changed)
}

// setLock changes an image's lock, in any state: a lock is about who may
// do what, not about the image's data.
func (s *Service) setLock(ctx context.Context, id int64, change func(*schemas.Image) error) (*schemas.Image, bool, error) {
	img, changed, err := s.images.Update(ctx, id, change)
	if errors.Is(err, ErrNotFound) {
		return nil, false, &refusal{bus.WithCode(schemas.CodeNotFound, fmt.Errorf("image %d does not exist", id))}
	}
	return img, changed, err
}
