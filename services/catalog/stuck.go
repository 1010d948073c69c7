package catalog

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// The image reconciler: the sagas' reconciler (workflow.go) finishes or
// fails what a saga holds; this one finishes or rolls back the states an
// operation outside a saga enters and a crash can leave behind, once no
// change touched the image for Config.StuckAfter:
//
//	DELETE            the delete is finished: blobs, name, record, image-deleted.
//	LOCKED_USED_PERS  the save of a VM's changes (image-release with save)
//	                  is rolled back to USED_PERS: the VM still holds the
//	                  image and its launcher releases it again. If the copy
//	                  over the blob had landed, the record takes the blob's
//	                  size and SHA-256, so it describes the blob it names.
//	LOCKED_USED       an operation that copied a shared image while VMs use
//	                  it never finished: back to USED (the copy reads the
//	                  image, never writes it).
//
// CLONE belongs to the clone saga. An image that still has a running saga
// is left to it.

// reconcileImages runs reconcileOnce every interval until ctx ends.
func (s *Service) reconcileImages(ctx context.Context, interval time.Duration) {
	s.every(ctx, interval, "reconciling stuck images", s.reconcileOnce)
}

// every runs once now and then every interval until ctx ends, logging
// its errors as what failed.
func (s *Service) every(ctx context.Context, interval time.Duration, what string, once func(context.Context) error) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := once(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn(what, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// reconcileOnce looks at every image once.
func (s *Service) reconcileOnce(ctx context.Context) error {
	all, err := s.images.List(ctx)
	if err != nil {
		return err
	}
	var errs []error
	for _, img := range all {
		if !s.stuck(ctx, &img) {
			continue
		}
		s.log.Warn("finishing or rolling back a stuck image", "image", img.ID, "state", img.State, "since", img.UpdatedAt)
		switch State(img.State) {
		case StateDelete:
			errs = append(errs, s.finishDelete(ctx, &img, reconcileCause("delete", img)))
		case StateLockedUsedPers, StateLockedUsed:
			errs = append(errs, s.rollBackLockedUsed(ctx, img.ID))
		}
	}
	return errors.Join(errs...)
}

// stuck reports whether img is in a state the reconciler handles, has not
// changed for StuckAfter and no running saga holds it.
func (s *Service) stuck(ctx context.Context, img *schemas.Image) bool {
	switch State(img.State) {
	case StateDelete, StateLockedUsedPers, StateLockedUsed:
	default:
		return false
	}
	at, err := time.Parse(time.RFC3339Nano, img.UpdatedAt)
	if err != nil || time.Since(at) < s.cfg.StuckAfter {
		return false
	}
	if img.SagaID == "" {
		return true
	}
	sg, err := s.sagas.Get(ctx, img.SagaID)
	return err != nil || sg.Status.Finished()
}

// rollBackLockedUsed gives a LOCKED_USED(_PERS) image back to the VMs that
// hold it, its record describing the blob it names.
func (s *Service) rollBackLockedUsed(ctx context.Context, id int64) error {
	img, _, err := s.images.Get(ctx, id)
	if err != nil {
		return err
	}
	got, err := s.describeBlob(ctx, img)
	if err != nil {
		return err
	}
	from := State(img.State)
	to := StateUsed
	if from == StateLockedUsedPers {
		to = StateUsedPers
	}
	after, changed, err := s.images.Update(ctx, id, func(cur *schemas.Image) error {
		if cur.UpdatedAt != img.UpdatedAt {
			return errNoChange // it moved meanwhile: not stuck
		}
		if got.sha256 != "" && (got.sha256 != cur.SHA256 || got.size != cur.StoredSize) {
			cur.SHA256, cur.StoredSize = got.sha256, got.size
		}
		return transition(cur, to)
	})
	if err != nil || !changed {
		return err
	}
	cause := reconcileCause("roll-back", *img)
	opts := causedBy(cause, schemas.EventCatalogStateChanged)
	reason := fmt.Sprintf("the operation that held image %d (%s) did not finish within %s; rolled back", id, from, s.cfg.StuckAfter)
	if err := s.emitState(ctx, id, from, to, reason, opts); err != nil {
		return err
	}
	return s.emitImage(ctx, schemas.EventCatalogImageUpdated, after, causedBy(cause, schemas.EventCatalogImageUpdated))
}

// reconcileCause is the envelope the reconciler's messages about img are
// caused by: one per image and stuck state, so a second pass publishes
// the same IDs, which JetStream drops.
func reconcileCause(what string, img schemas.Image) envelope.Envelope {
	id := "reconcile-" + what + "-" + idToken(img.ID) + "-" + img.UpdatedAt
	return envelope.Envelope{ID: id, CorrelationID: uuid.NewSHA1(sagaNamespace, []byte(id)).String()}
}

// describeBlob reads the size and SHA-256 of the image's blob (sha256 ""
// when the blob is missing or digests are not verified).
func (s *Service) describeBlob(ctx context.Context, img *schemas.Image) (storedBlob, error) {
	if img.Source == "" || !s.cfg.VerifyDigest {
		return storedBlob{}, nil
	}
	bucket, key, err := blob.ParseURL(img.Source)
	if err != nil {
		return storedBlob{}, nil
	}
	sum, size, err := s.blobs.SHA256(ctx, bucket, key)
	if blob.IsNotFound(err) {
		return storedBlob{missing: true}, nil
	}
	return storedBlob{sha256: sum, size: size}, err
}

// finishDelete does what a delete does once the image is in DELETE: its
// blobs, its LUKS secret, its name and its record go, then image-deleted.
// Every step can run again.
func (s *Service) finishDelete(ctx context.Context, img *schemas.Image, cause envelope.Envelope) error {
	if err := s.deleteBlobs(ctx, img); err != nil {
		return err
	}
	// The secret opens nothing any more. A resumed delete sends it again
	// with the same ID, which JetStream drops.
	if secret := img.Attributes[AttrLUKSSecret]; secret != "" {
		if err := s.sendSecretDelete(ctx, secret, img.ID, bus.CausedBy(cause)); err != nil {
			return err
		}
	}
	if err := s.images.releaseName(ctx, img.User, img.Name, img.ID); err != nil {
		return err
	}
	if err := s.images.Purge(ctx, img.ID); err != nil {
		return err
	}
	_, err := s.bus.Event(ctx, schemas.EventCatalogImageDeleted, idToken(img.ID),
		schemas.ImageDeleted{ID: img.ID, Name: img.Name}, causedBy(cause, schemas.EventCatalogImageDeleted)...)
	return err
}
