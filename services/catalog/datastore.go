package catalog

import (
	"fmt"
	"slices"

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
