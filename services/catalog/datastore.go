package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/schemas"
)

// DatastoreKind says what a datastore holds.
type DatastoreKind = schemas.DatastoreKind

// Datastore kinds.
const (
	KindImage = schemas.DatastoreKindImage // disks: OS, CDROM, DATABLOCK
	KindFile  = schemas.DatastoreKindFile  // files: KERNEL, RAMDISK, CONTEXT
)

// Datastore is a place images are stored: a bucket, and the image types it
// accepts; the catalog's datastores query answers them.
type Datastore = schemas.CatalogDatastore

// DefaultDatastores are `default` (disks) and `files` (kernels, ramdisks,
// contexts).
func DefaultDatastores() []Datastore {
	return []Datastore{
		{Name: "default", Kind: KindImage, Bucket: "slipway-default", Types: imageTypes(KindImage)},
		{Name: "files", Kind: KindFile, Bucket: "slipway-files", Types: imageTypes(KindFile)},
	}
}

func imageTypes(k DatastoreKind) []schemas.ImageType {
	if k == KindFile {
		return []schemas.ImageType{schemas.ImageTypeKernel, schemas.ImageTypeRamdisk, schemas.ImageTypeContext}
	}
	return []schemas.ImageType{schemas.ImageTypeOS, schemas.ImageTypeCDROM, schemas.ImageTypeDatablock}
}

// IsFileType reports whether an image type is a file type (KERNEL, RAMDISK,
// CONTEXT), which lives in a file datastore and cannot be persistent.
func IsFileType[T ~string](t T) bool {
	return slices.Contains(imageTypes(KindFile), schemas.ImageType(t))
}

// accepts explains why ds cannot hold an image of type t, or returns nil.
func accepts(ds Datastore, t schemas.ImageType) error {
	if slices.Contains(ds.Types, t) {
		return nil
	}
	if IsFileType(t) {
		return fmt.Errorf("type %s is a file type: it belongs in a file datastore (such as \"files\"), not in %s datastore %q", t, ds.Kind, ds.Name)
	}
	return fmt.Errorf("type %s is a disk type: it belongs in an image datastore (such as \"default\"), not in %s datastore %q", t, ds.Kind, ds.Name)
}

// Datastore IDs.
const (
	firstCreatedID = 100 // OpenNebula numbers the datastores one creates from 100
	unlimitedMB    = -1
)

// keyDatastoreIDPrefix claims a created datastore's ID in the meta
// bucket, keyDatastoreBucketPrefix its bucket (two datastores never share
// one, even when created at once).
const (
	keyDatastoreIDPrefix     = "datastore-id."
	keyDatastoreBucketPrefix = "datastore-bucket."
)

// datastoreKeys are the keys of every datastore record.
const datastoreKeys = keyDatastorePrefix + "*"

// builtins numbers the configured datastores 1, 2… in order (unless they
// have an ID) and marks them built in.
func builtins(ds []Datastore) []Datastore {
	out := slices.Clone(ds)
	for i := range out {
		if out[i].ID == 0 {
			out[i].ID = int64(i + 1)
		}
		out[i].Builtin = true
		out[i].DsMad, out[i].TmMad = schemas.DatastoreDriverS3, schemas.DatastoreDriverS3
		if out[i].LimitMb == 0 {
			out[i].LimitMb = unlimitedMB
		}
		out[i].User = cmp.Or(out[i].User, acl.AdminUser)
		out[i].Group = cmp.Or(out[i].Group, acl.AdminGroup)
		out[i].Permissions = cmp.Or(out[i].Permissions, builtinPermissions)
	}
	return out
}

// builtinPermissions are the configured datastores' bits until a chmod:
// everyone may use them (create images in them), as before datastores had
// permissions.
const builtinPermissions = "644"

// withOwnership is a configured datastore as configured, with the owner,
// group and permissions its record holds (datastore-chown, -chmod).
func withOwnership(cfg, rec Datastore) Datastore {
	cfg.User, cfg.Group, cfg.Permissions = rec.User, rec.Group, rec.Permissions
	return cfg
}

// readDatastore reads the record of datastore name and its revision; nil
// when there is none.
func (s *Service) readDatastore(ctx context.Context, name string) (*Datastore, uint64, error) {
	e, err := s.meta.Get(ctx, keyDatastorePrefix+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	var ds Datastore
	if err := json.Unmarshal(e.Value(), &ds); err != nil {
		return nil, 0, fmt.Errorf("datastore %s: record: %w", name, err)
	}
	return &ds, e.Revision(), nil
}

// datastore finds a datastore by name: a configured one (with the
// ownership its record holds), else a created one in the meta bucket.
func (s *Service) datastore(ctx context.Context, name string) (Datastore, error) {
	rec, _, err := s.readDatastore(ctx, name)
	if err != nil {
		return Datastore{}, err
	}
	if ds, ok := s.stores[name]; ok {
		if rec != nil && rec.User != "" {
			ds = withOwnership(ds, *rec)
		}
		return ds, nil
	}
	if rec == nil {
		all, lerr := s.allDatastores(ctx)
		if lerr != nil {
			return Datastore{}, lerr
		}
		names := make([]string, len(all))
		for i, d := range all {
			names[i] = d.Name
		}
		return Datastore{}, refuse("datastore %q does not exist (datastores: %s)", name, strings.Join(names, ", "))
	}
	return *rec, nil
}

// datastoreByRef finds a datastore by ID (decimal) or name.
func (s *Service) datastoreByRef(ctx context.Context, ref string) (Datastore, error) {
	id, err := strconv.ParseInt(ref, 10, 64)
	if err != nil {
		return s.datastore(ctx, ref)
	}
	all, err := s.allDatastores(ctx)
	if err != nil {
		return Datastore{}, err
	}
	for _, ds := range all {
		if ds.ID == id {
			return ds, nil
		}
	}
	return s.datastore(ctx, ref) // a datastore may be named with digits
}

// keyDatastoreDeletingPrefix marks a created datastore a delete is
// taking away ("datastore-deleting.<name>" = the delete command's ID).
const keyDatastoreDeletingPrefix = "datastore-deleting."

// datastoreStays refuses, once a new image's record is written, a
// datastore that is gone or being deleted: the delete marks the datastore
// before it looks for images, so either it sees the image or the image's
// creation sees its mark.
func (s *Service) datastoreStays(ctx context.Context, name string) error {
	if _, ok := s.stores[name]; ok {
		return nil // a configured datastore is never deleted
	}
	if _, err := s.datastore(ctx, name); err != nil {
		return err
	}
	_, err := s.meta.Get(ctx, keyDatastoreDeletingPrefix+name)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	return refuse("datastore %q is being deleted", name)
}

// allDatastores are the configured datastores, then the created ones by ID.
func (s *Service) allDatastores(ctx context.Context) ([]Datastore, error) {
	out := slices.Clone(s.cfg.Datastores)
	for i := range out {
		rec, _, err := s.readDatastore(ctx, out[i].Name)
		if err != nil {
			return nil, err
		}
		if rec != nil && rec.User != "" {
			out[i] = withOwnership(out[i], *rec)
		}
	}
	keys, err := s.meta.ListKeysFiltered(ctx, datastoreKeys)
	if err != nil {
		return nil, err
	}
	var created []Datastore
	for k := range keys.Keys() {
		name := strings.TrimPrefix(k, keyDatastorePrefix)
		if _, ok := s.stores[name]; ok {
			continue
		}
		ds, err := s.datastore(ctx, name)
		if isRefusal(err) {
			continue // deleted since it was listed
		}
		if err != nil {
			return nil, err
		}
		created = append(created, ds)
	}
	slices.SortFunc(created, func(a, b Datastore) int { return cmp.Compare(a.ID, b.ID) })
	return append(out, created...), nil
}
