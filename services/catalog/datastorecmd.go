package catalog

// Datastores an administrator creates (datastore-create) beside the
// configured ones (Config.Datastores: default and files, IDs 1 and 2 as
// OpenNebula numbers them; OpenNebula's system datastore 0 has no
// counterpart). A datastore is a record in the meta bucket
// ("datastore.<name>", the configured ones rewritten at every start) and
// its ID is claimed with its own key ("datastore-id.<id>", from 100 up),
// so that two creations never share a name or an ID. Its bucket is
// derived from nothing but the template's BUCKET, checked by
// checkDatastoreBucket; the catalog creates it when missing, on the
// catalog's own S3 or on the S3 remote the template's CREDENTIALS names
// (placeDatastore), and removes it with the datastore if it made it and
// it is empty (removeDatastoreBucket).
//
// Capacity is the sum of the recorded sizes of the datastore's images
// (Image.Size in MiB rounded up, as the quotas count them), not the
// bucket's bytes: it is cheap and counts what the images will take once
// converted. LIMIT_MB bounds it; image-create checks it with the quotas
// (quota.go), so racing creations cannot pass it together.

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7/pkg/s3utils"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
)

// withUsage fills in what ds's images take and their IDs.
func withUsage(ds Datastore, all []schemas.Image) Datastore {
	ds.Images, ds.UsedMb = []int64{}, 0
	for i := range all {
		if all[i].Datastore == ds.Name {
			ds.Images = append(ds.Images, all[i].ID)
			ds.UsedMb += sizeMB(all[i].Size)
		}
	}
	ds.FreeMb = 0
	if ds.LimitMb > 0 {
		ds.FreeMb = ds.LimitMb - ds.UsedMb
	}
	return ds
}

// datastoreSpec is what a datastore template says.
type datastoreSpec struct {
	name, bucket, endpoint, credentials string
	kind                                DatastoreKind
	limitMB                             int64
}

// datastoreAttrs are the attributes a datastore template may have.
var datastoreAttrs = []string{"NAME", "TYPE", "DS_MAD", "TM_MAD", "BUCKET", "ENDPOINT", "CREDENTIALS", "LIMIT_MB", "QUOTA"}

// parseDatastoreTemplate reads and checks a datastore template.
func parseDatastoreTemplate(text string) (datastoreSpec, error) {
	var sp datastoreSpec
	t, err := onetemplate.ParseString(text)
	if err != nil {
		return sp, badTemplate("%v", err)
	}
	for _, a := range t.Attrs {
		if !slices.Contains(datastoreAttrs, a.Name) || a.IsVector() {
			return sp, badTemplate("attribute %s is not one a datastore takes (%s, single values)", a.Name, strings.Join(datastoreAttrs, ", "))
		}
	}
	get := func(k string) string { v, _ := t.Get(k); return strings.TrimSpace(v) }
	sp.name = get("NAME")
	if _, err := strconv.ParseUint(sp.name, 10, 64); err == nil || !datastoreName.MatchString(sp.name) {
		return sp, badTemplate("NAME %q: want 1-63 lower-case letters, digits, '_' and '-', starting with a letter or digit, not only digits", sp.name)
	}
	switch get("TYPE") {
	case "IMAGE_DS":
		sp.kind = KindImage
	case "FILE_DS":
		sp.kind = KindFile
	case "SYSTEM_DS":
		return sp, badTemplate("TYPE SYSTEM_DS: the launcher keeps running VMs' disks on its own host; only IMAGE_DS and FILE_DS can be created")
	default:
		return sp, badTemplate("TYPE %q: want IMAGE_DS or FILE_DS", get("TYPE"))
	}
	for _, k := range []string{"DS_MAD", "TM_MAD"} {
		if v := get(k); v != "" && v != string(schemas.DatastoreDriverS3) || k == "DS_MAD" && v == "" {
			return sp, badTemplate("%s %q: the only driver is s3 (a bucket)", k, v)
		}
	}
	if sp.bucket, err = checkDatastoreBucket(get("BUCKET")); err != nil {
		return sp, err
	}
	sp.endpoint, sp.credentials = get("ENDPOINT"), get("CREDENTIALS")
	if sp.limitMB, err = limitOf(get("LIMIT_MB"), get("QUOTA")); err != nil {
		return sp, err
	}
	return sp, nil
}

// badTemplate refuses a datastore template as a malformed command.
func badTemplate(format string, args ...any) error {
	return &refusal{bus.WithCode(schemas.CodeInvalidCommand, fmt.Errorf("datastore template: "+format, args...))}
}

// datastoreName is the schema's Datastore pattern (defs.json); a name of
// digits only is refused besides, as it would read as an ID.
var datastoreName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

// checkDatastoreBucket checks a created datastore's bucket: a valid S3
// bucket name (strict rules: 3-63 characters, lower case, no "..", not an
// IP address) that starts with blob.DatastoreBucketPrefix, the buckets
// the services' S3 policies cover.
func checkDatastoreBucket(b string) (string, error) {
	if b == "" {
		return "", badTemplate("BUCKET is missing: name the bucket, %s<name>", blob.DatastoreBucketPrefix)
	}
	if err := s3utils.CheckValidBucketNameStrict(b); err != nil {
		return "", badTemplate("BUCKET %q is not a valid S3 bucket name: %v", b, err)
	}
	if !strings.HasPrefix(b, blob.DatastoreBucketPrefix) || len(b) == len(blob.DatastoreBucketPrefix) {
		return "", badTemplate("BUCKET %q must start with %q: the services' S3 policies cover %s* and nothing else", b, blob.DatastoreBucketPrefix, blob.DatastoreBucketPrefix)
	}
	return b, nil
}

// limitOf reads LIMIT_MB (or its alias QUOTA): a positive number of MB,
// or absent (unlimited).
func limitOf(limit, quota string) (int64, error) {
	if limit != "" && quota != "" && limit != quota {
		return 0, badTemplate("LIMIT_MB %q and QUOTA %q differ: give one", limit, quota)
	}
	v := limit + quota
	if limit != "" {
		v = limit
	}
	if v == "" {
		return unlimitedMB, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n <= 0 {
		return 0, badTemplate("LIMIT_MB %q: want a positive number of MB", v)
	}
	return n, nil
}

// placeDatastore checks where the template puts the datastore and
// fills in the endpoint: on the catalog's own S3 (CREDENTIALS absent or
// "default": the services' own keys), or on the S3 remote CREDENTIALS
// names (a reference to a remote every service has configured, never a
// secret), whose bucket patterns must hold BUCKET and whose endpoint
// ENDPOINT must name when given (else it is taken from the remote). Which
// server holds a bucket is the remotes' configuration, the same on every
// service: the template can only agree with it.
func (s *Service) placeDatastore(sp *datastoreSpec) error {
	if sp.credentials == "" || sp.credentials == blob.DefaultRemote {
		if r, ok := s.blobs.RemoteOf(sp.bucket); ok {
			return badTemplate("BUCKET %q lives on S3 remote %q (%s holds %s): give CREDENTIALS = %q", sp.bucket, r.Name, r.Endpoint, strings.Join(r.Buckets, ", "), r.Name)
		}
		if sp.endpoint != "" && !s.blobs.SameEndpoint(sp.endpoint) {
			return badTemplate("ENDPOINT %q is not the catalog's own S3 (%s): a datastore elsewhere names its S3 remote with CREDENTIALS (%s)", sp.endpoint, s.blobs.Config().Endpoint, s.remoteNames())
		}
		return nil
	}
	if !blob.IsRemoteName(sp.credentials) {
		// It may be a key pasted by mistake: it is not repeated.
		return badTemplate("CREDENTIALS is not the name of an S3 remote (lower-case letters, digits, '_' and '-'): it names a remote the services have configured (%s), never holds a key, so its value is not repeated here", s.remoteNames())
	}
	r, err := s.blobs.Remote(sp.credentials)
	if err != nil {
		return badTemplate("CREDENTIALS %q: %v; CREDENTIALS names a remote the services have configured (%s), or %q for their own keys", sp.credentials, err, blob.EnvRemotes, blob.DefaultRemote)
	}
	if !r.Holds(sp.bucket) {
		return badTemplate("BUCKET %q is not one of S3 remote %q's buckets (%s)", sp.bucket, r.Name, strings.Join(r.Buckets, ", "))
	}
	if sp.endpoint == "" {
		sp.endpoint = r.Endpoint
	} else if !r.Names(sp.endpoint) {
		return badTemplate("ENDPOINT %q is not S3 remote %q's endpoint (%s); leave ENDPOINT out to take it", sp.endpoint, r.Name, r.Endpoint)
	}
	return nil
}

// remoteNames names the S3 remotes the services have, for a message.
func (s *Service) remoteNames() string {
	var names []string
	for _, r := range s.blobs.Config().Remotes {
		names = append(names, r.Name)
	}
	if len(names) == 0 {
		return "none are configured"
	}
	return "remotes: " + strings.Join(names, ", ")
}

// bucketTimeout bounds datastore-create's check of the bucket: a remote
// that is down is refused with its error rather than holding the
// catalog's command handler through the client's retries for long.
const bucketTimeout = 30 * time.Second

// keyDatastoreMadePrefix marks a bucket the catalog made for a datastore
// ("datastore-made.<bucket>" = the datastore's name): only such a bucket
// is removed with its datastore, and only when empty.
const keyDatastoreMadePrefix = "datastore-made."

// ensureDatastoreBucket makes ds's bucket on its server unless it exists
// (so an operator may make it first, with a policy of their own), and
// marks it when the catalog made it.
func (s *Service) ensureDatastoreBucket(ctx context.Context, ds Datastore) error {
	bctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	made, err := s.blobs.CreateBucket(bctx, ds.Bucket)
	if err != nil {
		return refuse("datastore %s: bucket %s: %v", ds.Name, ds.Bucket, err)
	}
	if !made {
		return s.meta.Purge(ctx, keyDatastoreMadePrefix+ds.Bucket)
	}
	_, err = s.meta.Put(ctx, keyDatastoreMadePrefix+ds.Bucket, []byte(ds.Name))
	return err
}

// removeDatastoreBucket removes a deleted datastore's bucket if the
// catalog made it and it is empty (S3 refuses to remove a bucket holding
// objects, so nothing anyone wrote is lost); otherwise the bucket stays.
// A failure is logged: the datastore is gone either way.
func (s *Service) removeDatastoreBucket(ctx context.Context, ds Datastore) string {
	key := keyDatastoreMadePrefix + ds.Bucket
	e, err := s.meta.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) || err == nil && string(e.Value()) != ds.Name {
		return "kept (the catalog did not make it)"
	}
	if err != nil {
		return "kept: " + err.Error()
	}
	bctx, cancel := context.WithTimeout(ctx, bucketTimeout)
	defer cancel()
	if err := s.blobs.RemoveEmptyBucket(bctx, ds.Bucket); errors.Is(err, blob.ErrBucketNotEmpty) {
		return "kept (it holds objects)"
	} else if err != nil {
		return "kept: " + err.Error()
	}
	if err := s.meta.Delete(ctx, key); err != nil {
		return "removed (its mark stays: " + err.Error() + ")"
	}
	return "removed"
}

// datastoreCreate records a datastore, creates its bucket if missing and
// answers datastore-created.
func (s *Service) datastoreCreate(ctx context.Context, m *bus.Msg, req schemas.DatastoreCreate) error {
	sp, err := parseDatastoreTemplate(req.Template)
	if err != nil {
		return err
	}
	if err := s.placeDatastore(&sp); err != nil {
		return err
	}
	all, err := s.allDatastores(ctx)
	if err != nil {
		return err
	}
	for _, d := range all {
		if d.Name == sp.name {
			return refuse("datastore %q exists already (ID %d)", d.Name, d.ID)
		}
		if d.Bucket == sp.bucket {
			return refuse("bucket %s is datastore %q's already (ID %d)", d.Bucket, d.Name, d.ID)
		}
	}
	ds := Datastore{Name: sp.name, Kind: sp.kind, Bucket: sp.bucket, Types: imageTypes(sp.kind),
		DsMad: schemas.DatastoreDriverS3, TmMad: schemas.DatastoreDriverS3, LimitMb: sp.limitMB,
		Endpoint: sp.endpoint, Credentials: sp.credentials, CreatedAt: now(),
		Permissions: acl.New(acl.DefaultUmask).Octal()}
	ds.User, ds.Group = s.owner(ctx)
	// A delete of an earlier datastore of this name that stopped after
	// removing the record may have left its mark.
	if err := s.meta.Purge(ctx, keyDatastoreDeletingPrefix+ds.Name); err != nil {
		return err
	}
	if err := s.ensureDatastoreBucket(ctx, ds); err != nil {
		return err
	}
	if err := s.claimDatastoreBucket(ctx, ds); err != nil {
		return err
	}
	if ds.ID, err = s.claimDatastoreID(ctx, all, ds.Name); err != nil {
		return errors.Join(err, s.releaseDatastoreBucket(ctx, ds))
	}
	b, err := json.Marshal(ds)
	if err != nil {
		return err
	}
	if _, err := s.meta.Create(ctx, keyDatastorePrefix+ds.Name, b); err != nil {
		release := errors.Join(s.meta.Delete(ctx, keyDatastoreIDPrefix+strconv.FormatInt(ds.ID, 10)), s.releaseDatastoreBucket(ctx, ds))
		if errors.Is(err, jetstream.ErrKeyExists) {
			return errors.Join(refuse("datastore %q exists already", ds.Name), release)
		}
		return errors.Join(err, release)
	}
	s.log.Info("datastore created", "id", ds.ID, "name", ds.Name, "bucket", ds.Bucket, "endpoint", ds.Endpoint, "remote", ds.Credentials, "limit_mb", ds.LimitMb)
	_, err = s.bus.Event(ctx, schemas.EventCatalogDatastoreCreated, ds.Name, schemas.DatastoreCreated{Datastore: ds},
		causedBy(m.Envelope, schemas.EventCatalogDatastoreCreated)...)
	return err
}

// claimDatastoreBucket claims ds's bucket for it; a bucket another
// datastore claimed is refused. The claim names the datastore, so a
// redelivered creation finds its own.
func (s *Service) claimDatastoreBucket(ctx context.Context, ds Datastore) error {
	key := keyDatastoreBucketPrefix + ds.Bucket
	_, err := s.meta.Create(ctx, key, []byte(ds.Name))
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return err
	}
	e, err := s.meta.Get(ctx, key)
	if err != nil {
		return err
	}
	if string(e.Value()) != ds.Name {
		return refuse("bucket %s is datastore %q's already", ds.Bucket, e.Value())
	}
	return nil
}

// releaseDatastoreBucket gives ds's bucket claim up.
func (s *Service) releaseDatastoreBucket(ctx context.Context, ds Datastore) error {
	return s.meta.Delete(ctx, keyDatastoreBucketPrefix+ds.Bucket)
}

// claimDatastoreID claims the next free ID from 100 (after the highest
// one in use): the claim key makes it unique among racing creations.
func (s *Service) claimDatastoreID(ctx context.Context, all []Datastore, name string) (int64, error) {
	id := int64(firstCreatedID)
	for _, d := range all {
		id = max(id, d.ID+1)
	}
	for range maxQuotaTries {
		_, err := s.meta.Create(ctx, keyDatastoreIDPrefix+strconv.FormatInt(id, 10), []byte(name))
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
		id++
	}
	return 0, fmt.Errorf("datastore %s: no free ID after %d tries", name, maxQuotaTries)
}

// maxListedImages bounds the image IDs a refusal names.
const maxListedImages = 10

// datastoreDelete deletes a created datastore without images.
func (s *Service) datastoreDelete(ctx context.Context, m *bus.Msg, req schemas.DatastoreDelete) error {
	ds, err := s.datastoreByRef(ctx, req.Datastore)
	if err != nil {
		return err
	}
	if ds.Builtin {
		return refuse("datastore %d (%s) is one of the catalog's configured datastores: it cannot be deleted", ds.ID, ds.Name)
	}
	// Mark it first, then look for images (datastoreStays is the other
	// half); a redelivery of the same command finds its own mark.
	mark := keyDatastoreDeletingPrefix + ds.Name
	if _, err := s.meta.Create(ctx, mark, []byte(m.Envelope.ID)); errors.Is(err, jetstream.ErrKeyExists) {
		if e, gerr := s.meta.Get(ctx, mark); gerr != nil || string(e.Value()) != m.Envelope.ID {
			return refuse("datastore %d (%s) is being deleted by another command", ds.ID, ds.Name)
		}
	} else if err != nil {
		return err
	}
	all, err := s.images.List(ctx)
	if err != nil {
		return err
	}
	if ids := withUsage(ds, all).Images; len(ids) > 0 {
		return errors.Join(refuse("datastore %d has %d images: %s; delete them first", ds.ID, len(ids), listIDs(ids)),
			s.meta.Delete(ctx, mark))
	}
	for _, k := range []string{keyDatastorePrefix + ds.Name, keyDatastoreIDPrefix + strconv.FormatInt(ds.ID, 10), keyDatastoreBucketPrefix + ds.Bucket, mark} {
		if err := s.meta.Delete(ctx, k); err != nil {
			return err
		}
	}
	s.log.Info("datastore deleted", "id", ds.ID, "name", ds.Name, "bucket", ds.Bucket, "bucket_is", s.removeDatastoreBucket(ctx, ds))
	_, err = s.bus.Event(ctx, schemas.EventCatalogDatastoreDeleted, ds.Name, schemas.DatastoreDeleted{ID: ds.ID, Name: ds.Name},
		causedBy(m.Envelope, schemas.EventCatalogDatastoreDeleted)...)
	return err
}

// listIDs names up to maxListedImages IDs.
func listIDs(ids []int64) string {
	var parts []string
	for i, id := range ids {
		if i == maxListedImages {
			parts = append(parts, fmt.Sprintf("… (%d more)", len(ids)-i))
			break
		}
		parts = append(parts, strconv.FormatInt(id, 10))
	}
	return strings.Join(parts, ", ")
}

// datastoreCommand runs the datastore commands; ok is false for any other.
func (s *Service) datastoreCommand(ctx context.Context, m *bus.Msg) (ok bool, err error) {
	switch m.Name {
	case schemas.CommandCatalogDatastoreCreate:
		var req schemas.DatastoreCreate
		return true, decodeThen(m, &req, func() error { return s.datastoreCreate(ctx, m, req) })
	case schemas.CommandCatalogDatastoreDelete:
		var req schemas.DatastoreDelete
		return true, decodeThen(m, &req, func() error { return s.datastoreDelete(ctx, m, req) })
	case schemas.CommandCatalogDatastoreChmod:
		var req schemas.DatastoreChmod
		return true, decodeThen(m, &req, func() error { return s.datastoreChmod(ctx, m, req) })
	case schemas.CommandCatalogDatastoreChown:
		var req schemas.DatastoreChown
		return true, decodeThen(m, &req, func() error { return s.datastoreChown(ctx, m, req) })
	}
	return false, nil
}

// queryDatastores answers every datastore with its usage.
func (s *Service) queryDatastores(ctx context.Context, _ schemas.CatalogDatastoresRequest) (schemas.CatalogDatastoresReply, error) {
	all, err := s.allDatastores(ctx)
	if err != nil {
		return nil, err
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return nil, err
	}
	for i := range all {
		all[i] = withUsage(all[i], imgs)
	}
	return all, nil
}

// queryDatastoreShow answers one datastore with its usage.
func (s *Service) queryDatastoreShow(ctx context.Context, req schemas.CatalogDatastoreShowRequest) (schemas.CatalogDatastore, error) {
	ds, err := s.datastoreByRef(ctx, req.Datastore)
	if isRefusal(err) {
		return ds, bus.NotFound(err)
	}
	if err != nil {
		return ds, err
	}
	imgs, err := s.images.List(ctx)
	if err != nil {
		return ds, err
	}
	return withUsage(ds, imgs), nil
}

// datastoreChmod sets a datastore's bits.
func (s *Service) datastoreChmod(ctx context.Context, m *bus.Msg, req schemas.DatastoreChmod) error {
	perms, err := acl.ParseOctal(req.Permissions)
	if err != nil {
		return refuse("%w", err)
	}
	return s.updateDatastore(ctx, m, req.Datastore, func(ds *Datastore) { ds.Permissions = perms.Octal() })
}

// datastoreChown gives a datastore to a user and/or group that exist.
func (s *Service) datastoreChown(ctx context.Context, m *bus.Msg, req schemas.DatastoreChown) error {
	if req.User != "" {
		if _, err := named(ctx, s.users.users, "user", req.User); err != nil {
			return err
		}
	}
	if req.Group != "" {
		if _, err := named(ctx, s.users.groups, "group", req.Group); err != nil {
			return err
		}
	}
	return s.updateDatastore(ctx, m, req.Datastore, func(ds *Datastore) {
		ds.User, ds.Group = cmp.Or(req.User, ds.User), cmp.Or(req.Group, ds.Group)
	})
}

// updateDatastore changes the record of datastore ref with fn
// (compare-and-set on its revision) and answers datastore-updated.
func (s *Service) updateDatastore(ctx context.Context, m *bus.Msg, ref string, fn func(*Datastore)) error {
	for try := range maxQuotaTries {
		ds, err := s.datastoreByRef(ctx, ref)
		if err != nil {
			return err
		}
		rec, rev, err := s.readDatastore(ctx, ds.Name)
		if err != nil {
			return err
		}
		if rec == nil {
			return refuse("datastore %q does not exist", ds.Name)
		}
		// A configured datastore's record may predate ownership.
		rec.User, rec.Group, rec.Permissions = ds.User, ds.Group, ds.Permissions
		fn(rec)
		b, err := json.Marshal(rec)
		if err != nil {
			return err
		}
		_, err = s.meta.Update(ctx, keyDatastorePrefix+ds.Name, b, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			if err := kvstore.Backoff(ctx, try); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return err
		}
		if cfg, ok := s.stores[ds.Name]; ok {
			*rec = withOwnership(cfg, *rec)
		}
		_, err = s.bus.Event(ctx, schemas.EventCatalogDatastoreUpdated, ds.Name, schemas.DatastoreUpdated{Datastore: *rec},
			causedBy(m.Envelope, schemas.EventCatalogDatastoreUpdated)...)
		return err
	}
	return fmt.Errorf("datastore %s: the update kept racing other writes", ref)
}
