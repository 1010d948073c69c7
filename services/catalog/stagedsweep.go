package catalog

// The staged sweep: what users stage in the upload bucket
// (uploads/<user>/…, kernels/<user>/…, written with the keys upload-creds
// hands out or through upload-start) is deleted by the import or the
// kernel add that consumes it. What nothing consumes (an image-create the
// catalog refused, a CLI or page that died between the upload and the
// command) would stay for ever, counted by no quota and shown to nobody:
// sweepStaged deletes it once it is older than Config.UploadExpiry, unless
// a saga that has not finished names it (an import still reading its
// source). Only the users' staging areas are listed; the services' staging
// (kernel-registry/, vms/, ova/, builds/) belongs to the sagas and
// services that wrote it.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/blob"
)

// sweepUploadBucket is the upload bucket's periodic sweep: multipart
// uploads nobody completed, then staged objects nobody imported.
func (s *Service) sweepUploadBucket(ctx context.Context) error {
	return errors.Join(s.sweepUploads(ctx), s.sweepStaged(ctx))
}

// sweepStaged deletes every object in a user's staging area last written
// before UploadExpiry ago that no running saga names, and logs each.
func (s *Service) sweepStaged(ctx context.Context) error {
	if s.cfg.UploadExpiry <= 0 {
		return nil // no expiry: nothing is old enough
	}
	bucket := s.cfg.UploadBucket
	cutoff := time.Now().Add(-s.cfg.UploadExpiry)
	var inUse map[string]bool // read once an expired object is found
	var errs []error
	for _, prefix := range blob.UserStagingPrefixes {
		for o, err := range s.blobs.Objects(ctx, bucket, prefix) {
			if err != nil {
				errs = append(errs, err)
				break
			}
			user, ok := blob.UserStagingOwner(o.Key)
			if !ok || !o.LastModified.Before(cutoff) {
				continue
			}
			if inUse == nil {
				if inUse, err = s.stagedInUse(ctx); err != nil {
					return errors.Join(append(errs, err)...)
				}
			}
			if inUse[o.Key] {
				continue
			}
			s.log.Info("deleting a staged upload nothing imported", "user", user, "key", o.Key, "size", o.Size,
				"age", time.Since(o.LastModified).Round(time.Second), "expiry", s.cfg.UploadExpiry)
			if err := s.blobs.Delete(ctx, bucket, o.Key); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// stagedInUse is the key of every object of the upload bucket whose
// s3:// URL the data of a saga not finished names: an import's path and the upload it consumes
// (importData.Path, Staged; an OVA's Upload; a rootfs's URL), whatever the
// kind, so a new flow's fields are covered without a change here. A saga
// whose data cannot be read fails the sweep rather than lose its source.
func (s *Service) stagedInUse(ctx context.Context) (map[string]bool, error) {
	all, err := s.sagas.List(ctx)
	if err != nil {
		return nil, err
	}
	inUse := map[string]bool{}
	for _, sg := range all {
		if sg.Status.Finished() || len(sg.Data) == 0 {
			continue
		}
		var data any
		if err := json.Unmarshal(sg.Data, &data); err != nil {
			return nil, fmt.Errorf("saga %s: its data names no readable source: %w", sg.ID, err)
		}
		for _, u := range stringsIn(data) {
			if bucket, key, err := blob.ParseURL(u); err == nil && bucket == s.cfg.UploadBucket {
				inUse[key] = true
			}
		}
	}
	return inUse, nil
}

// stringsIn is every string in decoded JSON v, at any depth.
func stringsIn(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			out = append(out, stringsIn(e)...)
		}
		return out
	case map[string]any:
		var out []string
		for _, e := range v {
			out = append(out, stringsIn(e)...)
		}
		return out
	}
	return nil
}
