package catalog

// Multipart uploads for clients that hold no S3 key (the web console):
// upload-start begins one at a key the catalog derives from the
// authenticated user and the file's name (blob.UserStagingKey), and
// records it in the meta bucket ("upload.<uuid>"); upload-parts,
// upload-presign, upload-complete and upload-abort act only on a path
// under the asker's own staging prefix whose record names that upload.
// Each part's URL is signed for the part's SHA-256, so S3 verifies the
// bytes on receipt. sweepUploads aborts the recorded uploads nobody
// completed within Config.UploadExpiry (MinIO lists pending uploads only
// per object, never by prefix, so the record is what finds them).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// keyUploadPrefix begins the meta keys of the uploads upload-start began.
const keyUploadPrefix = "upload."

// pendingUpload is the record of an upload upload-start began.
type pendingUpload struct {
	User     string    `json:"user"`
	Key      string    `json:"key"`
	UploadID string    `json:"upload_id"`
	Started  time.Time `json:"started"`
}

// uploadRecordKey is the meta key of the upload of staged key
// uploads/<user>/<uuid>/<file>: upload.<uuid>.
func uploadRecordKey(key string) string {
	parts := strings.Split(key, "/")
	if len(parts) != 4 {
		return ""
	}
	return keyUploadPrefix + parts[2]
}

func (s *Service) queryUploadStart(ctx context.Context, r schemas.CatalogUploadStartRequest) (schemas.CatalogUploadStartReply, error) {
	user, err := s.uploader(ctx)
	if err != nil {
		return schemas.CatalogUploadStartReply{}, err
	}
	key, err := blob.UserStagingKey(user, r.Name)
	if err != nil {
		return schemas.CatalogUploadStartReply{}, bus.Invalid(err)
	}
	id, err := s.blobs.StartMultipart(ctx, s.cfg.UploadBucket, key)
	if err != nil {
		return schemas.CatalogUploadStartReply{}, err
	}
	rec, _ := json.Marshal(pendingUpload{User: user, Key: key, UploadID: id, Started: time.Now().UTC()})
	if _, err := s.meta.Create(ctx, uploadRecordKey(key), rec); err != nil {
		return schemas.CatalogUploadStartReply{}, errors.Join(err, s.blobs.AbortMultipart(context.WithoutCancel(ctx), s.cfg.UploadBucket, key, id))
	}
	partSize, parts := blob.PartSizeFor(r.Size)
	return schemas.CatalogUploadStartReply{Path: blob.URL(s.cfg.UploadBucket, key), UploadID: id, PartSize: partSize, Parts: int64(parts)}, nil
}

// ownUpload is the key of upload ref if it is the asker's: a path under
// their own staging prefix whose record (upload-start's) names that
// upload ID. Anything else is forbidden (another's prefix) or not found.
func (s *Service) ownUpload(ctx context.Context, ref schemas.UploadRef) (string, error) {
	user, err := s.uploader(ctx)
	if err != nil {
		return "", err
	}
	if err := s.locations().CheckStaged(ref.Path, user); err != nil {
		return "", bus.Forbidden(err)
	}
	_, key, err := blob.ParseURL(ref.Path)
	if err != nil {
		return "", bus.Invalid(err)
	}
	gone := bus.NotFound(fmt.Errorf("upload %s of %s: no such upload (completed, aborted, expired after %s, or never started by upload-start)", ref.UploadID, ref.Path, s.cfg.UploadExpiry))
	e, err := s.meta.Get(ctx, uploadRecordKey(key))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", gone
	}
	if err != nil {
		return "", err
	}
	var rec pendingUpload
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return "", fmt.Errorf("upload record of %s: %w", ref.Path, err)
	}
	if rec.User != user || rec.Key != key || rec.UploadID != ref.UploadID {
		return "", gone
	}
	return key, nil
}

func (s *Service) queryUploadParts(ctx context.Context, r schemas.UploadRef) (schemas.CatalogUploadPartsReply, error) {
	key, err := s.ownUpload(ctx, r)
	if err != nil {
		return schemas.CatalogUploadPartsReply{}, err
	}
	parts, err := s.blobs.ListParts(ctx, s.cfg.UploadBucket, key, r.UploadID)
	if err != nil {
		return schemas.CatalogUploadPartsReply{}, s3Refusal(err)
	}
	out := schemas.CatalogUploadPartsReply{Parts: make([]schemas.UploadPart, len(parts))}
	for i, p := range parts {
		out.Parts[i] = schemas.UploadPart{Number: int64(p.Number), Size: p.Size, Etag: p.ETag, ChecksumSHA256: p.SHA256}
	}
	return out, nil
}

func (s *Service) queryUploadPresign(ctx context.Context, r schemas.CatalogUploadPresignRequest) (schemas.CatalogUploadPresignReply, error) {
	key, err := s.ownUpload(ctx, schemas.UploadRef{Path: r.Path, UploadID: r.UploadID})
	if err != nil {
		return schemas.CatalogUploadPresignReply{}, err
	}
	signer, err := blob.New(s.publicS3(s.cfg.UploadBucket))
	if err != nil {
		return schemas.CatalogUploadPresignReply{}, err
	}
	ttl := time.Hour
	if r.ExpiresS > 0 {
		ttl = time.Duration(r.ExpiresS) * time.Second
	}
	out := schemas.CatalogUploadPresignReply{ExpiresAt: time.Now().Add(ttl).UTC().Format(time.RFC3339)}
	for _, p := range r.Parts {
		u, err := signer.PresignPart(ctx, s.cfg.UploadBucket, key, r.UploadID, int(p.Number), p.ChecksumSHA256, ttl)
		if err != nil {
			return schemas.CatalogUploadPresignReply{}, err
		}
		out.Urls = append(out.Urls, schemas.UploadPartURL{Number: p.Number, URL: u.String()})
	}
	return out, nil
}

func (s *Service) queryUploadComplete(ctx context.Context, r schemas.CatalogUploadCompleteRequest) (schemas.CatalogUploadCompleteReply, error) {
	key, err := s.ownUpload(ctx, schemas.UploadRef{Path: r.Path, UploadID: r.UploadID})
	if err != nil {
		return schemas.CatalogUploadCompleteReply{}, err
	}
	parts := make([]blob.Part, len(r.Parts))
	for i, p := range r.Parts {
		parts[i] = blob.Part{Number: int(p.Number), ETag: p.Etag, SHA256: p.ChecksumSHA256}
	}
	info, err := s.blobs.CompleteMultipart(ctx, s.cfg.UploadBucket, key, r.UploadID, parts)
	if err != nil {
		return schemas.CatalogUploadCompleteReply{}, s3Refusal(err)
	}
	s.forgetUpload(ctx, key)
	return schemas.CatalogUploadCompleteReply{Path: r.Path, Size: info.Size, S3Checksum: info.S3Checksum}, nil
}

func (s *Service) queryUploadAbort(ctx context.Context, r schemas.UploadRef) (schemas.UploadRef, error) {
	key, err := s.ownUpload(ctx, r)
	if err != nil {
		return schemas.UploadRef{}, err
	}
	if err := s.blobs.AbortMultipart(ctx, s.cfg.UploadBucket, key, r.UploadID); err != nil {
		return schemas.UploadRef{}, err
	}
	s.forgetUpload(ctx, key)
	return r, nil
}

// forgetUpload drops the record of the upload of key; a record left
// behind only makes the sweep abort an upload that is gone already.
func (s *Service) forgetUpload(ctx context.Context, key string) {
	if err := s.meta.Delete(ctx, uploadRecordKey(key)); err != nil {
		s.log.Warn("forgetting an upload", "key", key, "err", err)
	}
}

// s3Refusal is err as the asker's mistake when S3 refused the request
// for what it named (a part missing, an ETag or checksum that does not
// match), else err.
func s3Refusal(err error) error {
	if blob.IsNotFound(err) {
		return bus.NotFound(err)
	}
	if blob.IsClientError(err) {
		return bus.Invalid(err)
	}
	return err
}

// sweepUploads aborts every recorded upload started before UploadExpiry
// ago, and drops its record.
func (s *Service) sweepUploads(ctx context.Context) error {
	keys, err := s.meta.ListKeysFiltered(ctx, keyUploadPrefix+"*")
	if err != nil {
		return err
	}
	cutoff := time.Now().Add(-s.cfg.UploadExpiry)
	var errs []error
	for k := range keys.Keys() {
		e, err := s.meta.Get(ctx, k)
		if err != nil {
			if !errors.Is(err, jetstream.ErrKeyNotFound) {
				errs = append(errs, err)
			}
			continue
		}
		var rec pendingUpload
		if err := json.Unmarshal(e.Value(), &rec); err != nil || !rec.Started.Before(cutoff) {
			continue
		}
		s.log.Info("aborting an upload nobody completed", "user", rec.User, "key", rec.Key, "started", rec.Started)
		if err := s.blobs.AbortMultipart(ctx, s.cfg.UploadBucket, rec.Key, rec.UploadID); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, s.meta.Delete(ctx, k))
	}
	return errors.Join(errs...)
}
