package catalog

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"strings"
	"time"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/saga"
	"github.com/slipway/slipway/schemas"
)

// What every saga that makes a new image shares: the image ID and saga ID
// a command claims, the LOCKED record and its announcement, and the commit
// phase that checks the reported blob and makes the image READY (or puts
// it in ERROR and compensates). The flows of importsaga.go, dockersaga.go
// and luks.go end in this commit phase; they differ in what comes before.

// PhaseCommit is the last phase of a saga that makes a new image.
const (
	PhaseCommit   = saga.Phase("commit")
	stepCommitted = "committed"
)

// commitPhase declares the commit phase: the catalog's own work, resumed
// after a restart (no message would redeliver it).
func (s *Service) commitPhase(what string) phase {
	return phase{
		name:     PhaseCommit,
		deadline: s.cfg.CommitDeadline,
		expired: func(_ *saga.Saga, d time.Duration) string {
			return fmt.Sprintf("%s could not be committed within %s", what, d)
		},
		resume: func(ctx context.Context, sg *saga.Saga) error { return s.commit(ctx, sg, nil) },
	}
}

// importData is the import saga's own state.
type importData struct {
	ImageID   int64  `json:"image_id"`
	CommandID string `json:"command_id"`
	// Command is the subject of the command that started the import.
	Command string `json:"command"`
	// Dest is where the converter was asked to store the blob.
	Dest string `json:"dest"`
	// Path is what the command asked to import (its path), kept while
	// the saga runs so the staged sweep leaves an upload it reads alone,
	// staged or not (stagedsweep.go).
	Path string `json:"path,omitempty"`
	// Staged is the upload to delete once the import is over.
	Staged string `json:"staged,omitempty"`
	// Result is the converter's report, kept for a commit resumed after a
	// crash.
	Result *schemas.ConverterConverted `json:"result,omitempty"`
	// SetAttributes are merged into the image's attributes at commit
	// (provenance of a docker import).
	SetAttributes map[string]string `json:"set_attributes,omitempty"`
	// SizeLimit is the largest virtual size the owner's and group's SIZE
	// quotas left the import when it was created, for the converter to
	// refuse a bigger one before it stores anything; SizeLimitedBy names
	// that quota. 0: no quota was tighter than the catalog's own limit.
	SizeLimit     int64  `json:"size_limit,omitempty"`
	SizeLimitedBy string `json:"size_limited_by,omitempty"`
	// TypeByFormat: the create named no type, so the converter's report
	// may decide it (an ISO 9660/UDF image becomes a CDROM).
	TypeByFormat bool `json:"type_by_format,omitempty"`
}

// maxVirtualSize is the limit the converter is given: the catalog's, or
// what the quotas left when tighter.
func (d importData) maxVirtualSize(catalog int64) int64 {
	if d.SizeLimit > 0 && (catalog <= 0 || d.SizeLimit < catalog) {
		return d.SizeLimit
	}
	return catalog
}

// dropUpload deletes upload, the staged object saga sagaID consumed,
// once its image exists: an image-create refused before its record was
// stored (register: a quota, the name taken meanwhile) handed the upload
// to no worker, so it stays for another image-create of the same path,
// until the staged sweep removes it after UploadExpiry.
func (s *Service) dropUpload(ctx context.Context, imageID int64, sagaID, upload string) error {
	if upload == "" {
		return nil
	}
	if _, _, err := s.images.Get(ctx, imageID); errors.Is(err, ErrNotFound) {
		s.log.Info("keeping the upload of a refused image-create", "saga", sagaID, "upload", upload, "for", s.cfg.UploadExpiry)
		return nil
	} else if err != nil {
		return err
	}
	return s.deleteURL(ctx, upload)
}

// deleteOwned deletes a reported blob if it lies where image blobs live,
// unless the image records it as its blob.
func (s *Service) deleteOwned(ctx context.Context, ev schemas.ConverterConverted) error {
	bucket, key, err := blob.ParseURL(ev.Dest)
	if err != nil || !strings.HasPrefix(key, imagePrefix(ev.ImageID)) || !s.isDatastoreBucket(bucket) {
		return nil
	}
	if kept, err := s.images.recordsBlob(ctx, ev.ImageID, ev.Dest); kept || err != nil {
		return err
	}
	return s.deleteURL(ctx, ev.Dest)
}

// deleteAttempt deletes a reported blob only if it lies under the key
// prefix of saga sagaID's attempt (images/<id>/<saga>/): a report about a
// saga never makes the catalog delete what another attempt wrote.
func (s *Service) deleteAttempt(ctx context.Context, ev schemas.ConverterConverted, sagaID string) error {
	_, key, err := blob.ParseURL(ev.Dest)
	if err != nil || !strings.HasPrefix(key, blob.AttemptPrefix(ev.ImageID, sagaID)) {
		s.log.Warn("not deleting a reported blob outside its attempt's keys", "image", ev.ImageID, "saga", sagaID, "dest", ev.Dest)
		return nil
	}
	return s.deleteOwned(ctx, ev)
}

// commit checks the stored blob against the converter's report and makes
// the image READY. It is idempotent, so a redelivered report or the
// reconciler can run it again after a crash.
func (s *Service) commit(ctx context.Context, sg *saga.Saga, cause *envelope.Envelope) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	if d.Result == nil {
		return s.failImport(ctx, sg, "import reached commit without the converter's report", cause)
	}
	if reason, err := s.verifyBlob(ctx, s.flowOf(sg.Kind).reporter, *d.Result); err != nil {
		return err
	} else if reason != "" {
		return s.failImport(ctx, sg, reason, cause)
	}
	res := d.Result
	// The size is known now: it must fit the quotas before the image is
	// READY (a refusal ends it in ERROR; compensation deletes the blob).
	if err := s.reserveSize(ctx, d.ImageID, sg.ID, res.VirtualSize); isRefusal(err) {
		return s.failImportCode(ctx, sg, schemas.CodeQuotaExceeded, err.Error(), cause)
	} else if err != nil {
		return err
	}
	img, _, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		if img.SagaID != sg.ID {
			return fmt.Errorf("image %d belongs to saga %s now: %w", img.ID, img.SagaID, errLost)
		}
		if State(img.State) == StateReady && img.Source == res.Dest {
			return errNoChange
		}
		if State(img.State) != StateLocked {
			return fmt.Errorf("image %d is %s: %w", img.ID, img.State, errLost)
		}
		img.State = schemas.ImageStateReady
		img.Error = ""
		img.Format = res.Format
		img.Type = typeByFormat(img.Type, *res, d.TypeByFormat)
		img.Size = res.VirtualSize
		img.StoredSize = res.Size
		img.SHA256 = res.SHA256
		img.Source = res.Dest
		if len(d.SetAttributes) > 0 {
			if img.Attributes == nil {
				img.Attributes = map[string]string{}
			}
			maps.Copy(img.Attributes, d.SetAttributes)
		}
		return nil
	})
	switch {
	case errors.Is(err, errLost), errors.Is(err, ErrNotFound):
		// The image went to ERROR (deadline) or away while we checked:
		// this import has nobody to deliver to.
		return s.failImport(ctx, sg, fmt.Sprintf("import finished too late: %v", err), cause)
	case err != nil:
		return err
	}
	opts := func(what string) []bus.PubOption { return stepOpts(sg.ID, cause, what) }
	if err := s.emitState(ctx, img.ID, StateLocked, StateReady, "", opts(stepCommitted+"/"+schemas.EventCatalogStateChanged)); err != nil {
		return err
	}
	if err := s.emitImage(ctx, schemas.EventCatalogImageUpdated, img, opts(stepCommitted+"/"+schemas.EventCatalogImageUpdated)); err != nil {
		return err
	}
	if err := s.deleteURL(ctx, d.Staged); err != nil {
		return err
	}
	_, err = s.sagas.Succeed(ctx, sg.ID, "image READY")
	return err
}

var errLost = errors.New("the import no longer owns the image")

// verifyBlob returns why the stored blob does not match the converter's
// report ("" when it does); err is for failures worth retrying.
func (s *Service) verifyBlob(ctx context.Context, who string, res schemas.ConverterConverted) (reason string, err error) {
	bucket, key, err := blob.ParseURL(res.Dest)
	if err != nil {
		return fmt.Sprintf("%s reported an invalid destination: %v", who, err), nil
	}
	got, err := s.readBlob(ctx, bucket, key, res.Size, res.S3Checksum)
	switch {
	case err != nil:
		return "", err
	case got.missing:
		return fmt.Sprintf("%s reported %s, but the store has no such object", who, res.Dest), nil
	case got.size != res.Size:
		return fmt.Sprintf("%s reported %d bytes at %s, but the store holds %d", who, res.Size, res.Dest, got.size), nil
	case !digestsAgree(res.SHA256, res.S3Checksum):
		return fmt.Sprintf("%s reported SHA-256 %s and S3 checksum %s for %s, which are not the same digest", who, res.SHA256, res.S3Checksum, res.Dest), nil
	case got.checksumDiffers(res.S3Checksum):
		return fmt.Sprintf("%s has S3 checksum %s, but %s reported %s", res.Dest, got.s3Checksum, who, res.S3Checksum), nil
	case got.vanished:
		return fmt.Sprintf("%s vanished while its digest was checked", res.Dest), nil
	case got.sha256 != "" && got.sha256 != res.SHA256:
		return fmt.Sprintf("%s has SHA-256 %s, but %s reported %s", res.Dest, got.sha256, who, res.SHA256), nil
	}
	return "", nil
}

// storedBlob is what the store holds at a blob's key, read to check a
// report of it.
type storedBlob struct {
	missing bool // no object
	size    int64
	// s3Checksum is the object's S3 SHA-256 checksum, asked for when the
	// report has one ("" when the object has none).
	s3Checksum string
	// sha256 is read only when digests are verified (Config.VerifyDigest),
	// the size is the one reported and no S3 checksum settles the
	// content; vanished: the object went away meanwhile.
	sha256   string
	vanished bool
}

// checksumDiffers says the object's S3 checksum is not the one reported.
// Equal, the stored bytes are the ones the writer hashed as it sent them:
// the store verified every part against the writer's SHA-256 on receipt.
func (b storedBlob) checksumDiffers(reported string) bool {
	return checksumsComparable(reported, b.s3Checksum) && b.s3Checksum != reported
}

// checksumsComparable says two S3 checksums can be compared: both given,
// and both of the same kind, the whole object's digest or the digest of
// its parts' ("…-N"). A clone expects the whole object's, but a copy to
// another server is a Put, which records the parts' when it is large.
func checksumsComparable(a, b string) bool {
	return a != "" && b != "" && strings.Contains(a, "-") == strings.Contains(b, "-")
}

// digestsAgree says a report's SHA-256 (hex) and S3 checksum can describe
// the same bytes: a single PUT's checksum is that SHA-256 in base64, so
// the two must match; a multipart one ("…-N") hashes the parts' digests,
// which the whole-content SHA-256 cannot be checked against without the
// data.
func digestsAgree(sha256Hex, s3Checksum string) bool {
	if s3Checksum == "" || strings.Contains(s3Checksum, "-") {
		return true
	}
	return wholeChecksum(sha256Hex) == s3Checksum
}

// wholeChecksum is the S3 checksum a store records for an object written
// in one request whose SHA-256 is sha256Hex: that digest in base64 ("" for
// a digest that is not hex).
func wholeChecksum(sha256Hex string) string {
	raw, err := hex.DecodeString(sha256Hex)
	if err != nil || len(raw) == 0 {
		return ""
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// readBlob reads what the store holds at bucket/key, for a report of size
// bytes and S3 checksum s3Checksum ("" for none); err is for failures
// worth retrying. With a checksum of the same kind both in the report and
// on the object, a HEAD is all it costs: the content is read back
// (Config.VerifyDigest) only when either lacks one or they cannot be
// compared, so older reports, stores without additional checksums and
// clones to another server are still verified.
func (s *Service) readBlob(ctx context.Context, bucket, key string, size int64, s3Checksum string) (storedBlob, error) {
	stat := s.blobs.Stat
	if s3Checksum != "" {
		stat = s.blobs.StatChecksum
	}
	info, err := stat(ctx, bucket, key)
	if blob.IsNotFound(err) {
		return storedBlob{missing: true}, nil
	}
	if err != nil {
		return storedBlob{}, err
	}
	got := storedBlob{size: info.Size, s3Checksum: info.S3Checksum}
	if info.Size != size || !s.cfg.VerifyDigest || checksumsComparable(s3Checksum, got.s3Checksum) {
		return got, nil
	}
	got.sha256, _, err = s.blobs.SHA256(ctx, bucket, key)
	if blob.IsNotFound(err) {
		got.vanished = true
		return got, nil
	}
	return got, err
}

// failImport ends an import in ERROR with reason, for a failure found by
// the catalog itself (code internal); failImportCode says why the
// workers' way.
func (s *Service) failImport(ctx context.Context, sg *saga.Saga, reason string, cause *envelope.Envelope) error {
	return s.failImportCode(ctx, sg, schemas.CodeInternal, reason, cause)
}

// failImportCode ends an import in ERROR: the image goes to ERROR with reason,
// a failed event says why, and the saga is failed and compensated. If the
// image is READY from this saga already (the commit won a race, or crashed
// before finishing), the commit is finished instead.
func (s *Service) failImportCode(ctx context.Context, sg *saga.Saga, code, reason string, cause *envelope.Envelope) error {
	var d importData
	if err := sg.Decode(&d); err != nil {
		return err
	}
	committed := false
	img, changed, err := s.images.Update(ctx, d.ImageID, func(img *schemas.Image) error {
		switch {
		case img.SagaID != sg.ID || State(img.State) == StateError:
			return errNoChange
		case State(img.State) != StateLocked:
			committed = true
			return errNoChange
		}
		img.State = schemas.ImageStateError
		img.Error = schemas.ErrorText(namingApp(img, reason))
		img.Size = 0 // it holds no data: its SIZE no longer counts against quotas
		return nil
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	if committed {
		if sg.Phase == PhaseCommit && sg.Status == saga.StatusRunning {
			return s.commit(ctx, sg, cause)
		}
		return nil
	}
	opts := func(what string) []bus.PubOption { return stepOpts(sg.ID, cause, what) }
	if img != nil && (changed || State(img.State) == StateError) {
		id := img.ID
		if err := s.emitState(ctx, id, StateLocked, StateError, img.Error, opts("import-failed/"+schemas.EventCatalogStateChanged)); err != nil {
			return err
		}
		if err := s.emitFailed(ctx, idToken(id), &id, d.Command, code, img.Error, opts("import-failed/"+schemas.EventCatalogFailed)); err != nil {
			return err
		}
	}
	return s.settle(ctx, sg, reason)
}

// namingApp is reason for an image imported from a marketplace app, with
// the app named first ("marketplace app lxc/debian_bookworm_amd64_default:
// checksum mismatch for …"): the URL a worker names is the mirror's, not
// what the person imported.
func namingApp(img *schemas.Image, reason string) string {
	mk, app := img.Attributes[schemas.AttrMarketplace], img.Attributes[schemas.AttrMarketplaceApp]
	if mk == "" || app == "" {
		return reason
	}
	return fmt.Sprintf("marketplace app %s/%s: %s", mk, app, reason)
}

// claimIDs returns the image and saga IDs of a command that makes a new
// image named name: those an earlier delivery claimed (prior), else new
// ones (claimNewImage) once no image of the user holds the name. That
// check fails early, before burning an ID, in the common case; the name
// claim after allocation settles races.
func (s *Service) claimIDs(ctx context.Context, m *bus.Msg, prior *processed, name string) (processed, error) {
	if prior == nil {
		owner, _ := s.owner(ctx)
		if held, err := s.images.lookupName(ctx, owner, name); err == nil {
			return processed{}, refuse("an image named %q already exists for user %s (ID %d): image names are unique per owner", name, owner, held.ID)
		}
		var err error
		if prior, err = s.claimNewImage(ctx, m); err != nil {
			return processed{}, err
		}
	}
	return processed{ImageID: prior.ImageID, SagaID: prior.SagaID}, nil
}

// claimNewImage allocates an image ID and a saga ID for a command and
// records them, so a redelivery resumes with the same ones.
func (s *Service) claimNewImage(ctx context.Context, m *bus.Msg) (*processed, error) {
	id, err := s.images.NextID(ctx)
	if err != nil {
		return nil, err
	}
	sagaID, err := s.chooseSagaID(ctx, m)
	if err != nil {
		return nil, err
	}
	won, err := s.dedupClaim(ctx, m.Envelope.ID, processed{ImageID: id, SagaID: sagaID})
	if err != nil {
		return nil, err
	}
	return &won, nil
}

// register makes a new image exist under the IDs claimIDs gave it: start
// starts its saga, then its name is claimed (a refusal abandons the saga),
// and its LOCKED record rec is stored, if it fits its owner's and group's
// quotas (else the name is released and the saga abandoned: nothing was
// written to the store), and announced. Each step tolerates
// having been done already, so a redelivery after a crash finishes the
// job. quota is what the caller read of the record's quotas, or nil.
func (s *Service) register(ctx context.Context, m *bus.Msg, ids processed, start func() error, rec *schemas.Image, quota *quotaView) error {
	if err := start(); err != nil {
		return err
	}
	if err := s.images.claimName(ctx, s.ownerName(ctx), rec.Name, ids.ImageID); err != nil {
		if isRefusal(err) {
			s.abandon(ctx, ids.SagaID, err.Error())
		}
		return err
	}
	img, err := s.insertWithinQuota(ctx, rec, quota)
	if err != nil {
		if isRefusal(err) {
			_ = s.images.releaseName(ctx, rec.User, rec.Name, ids.ImageID)
			s.abandon(ctx, ids.SagaID, err.Error())
		}
		return err
	}
	return s.announce(ctx, m, img)
}

// announce publishes a new record: image-created (the answer a client
// waits for) and its first state.
func (s *Service) announce(ctx context.Context, m *bus.Msg, img *schemas.Image) error {
	if err := s.emitImage(ctx, schemas.EventCatalogImageCreated, img, causedBy(m.Envelope, schemas.EventCatalogImageCreated)); err != nil {
		return err
	}
	return s.emitState(ctx, img.ID, "", StateLocked, "", causedBy(m.Envelope, schemas.EventCatalogStateChanged))
}

// insert stores a new record, or returns the one a previous delivery
// stored.
func (s *Service) insert(ctx context.Context, img *schemas.Image) (*schemas.Image, error) {
	img.User, img.Group = s.owner(ctx)
	img.Permissions = acl.New(acl.DefaultUmask).Octal()
	_, err := s.images.Create(ctx, img.ID, img)
	if !errors.Is(err, kvstore.ErrExists) {
		return img, err
	}
	cur, _, err := s.images.Get(ctx, img.ID)
	if err != nil {
		return nil, err
	}
	if cur.SagaID != img.SagaID {
		return nil, fmt.Errorf("image %d already exists for saga %s, not %s", img.ID, cur.SagaID, img.SagaID)
	}
	return cur, nil
}

// typeByFormat is the type an imported image gets once the converter has
// inspected its input: an ISO 9660 or UDF input whose create named no type
// is a CDROM, as OpenNebula types ISOs, whatever format it is stored in.
// A type the create named is kept whatever the data (an installer ISO
// deliberately registered as OS stays OS).
func typeByFormat(current schemas.ImageType, res schemas.ConverterConverted, byFormat bool) schemas.ImageType {
	input := res.DetectedFormat
	if input == "" {
		input = res.Format
	}
	if byFormat && current == schemas.ImageTypeOS && input == schemas.DiskFormatISO {
		return schemas.ImageTypeCDROM
	}
	return current
}

// lockFor moves image id from `from` to LOCKED for saga sagaID in one
// compare-and-set, once check accepts the record as it is then (a VM that
// took the image meanwhile makes it a refusal); a redelivery finds it
// locked already. The state change is announced under step what.
func (s *Service) lockFor(ctx context.Context, m *bus.Msg, sagaID string, id int64, from State, what string, check func(*schemas.Image) error) error {
	_, changed, err := s.images.Update(ctx, id, func(img *schemas.Image) error {
		if img.SagaID == sagaID && State(img.State) == StateLocked {
			return errNoChange // a redelivery: locked already
		}
		if err := check(img); err != nil {
			return err
		}
		img.SagaID = sagaID
		return transition(img, StateLocked)
	})
	if errors.Is(err, ErrNotFound) {
		return refuse("image %d does not exist", id)
	}
	if err != nil {
		return err
	}
	if changed || m.Delivered > 1 {
		return s.emitState(ctx, id, from, StateLocked, "", causedBy(m.Envelope, what+"/"+schemas.EventCatalogStateChanged))
	}
	return nil
}
