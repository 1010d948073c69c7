package catalog

import (
	"fmt"
	"slices"
)

// DatastoreKind says what a datastore holds.
type DatastoreKind string

// Datastore kinds.
const (
	KindImage DatastoreKind = "image" // disks: OS, CDROM, DATABLOCK
	KindFile  DatastoreKind = "file"  // files: KERNEL, RAMDISK, CONTEXT
)

// Datastore is a place images are stored: a bucket.
type Datastore struct {
	Name   string        `json:"name"`
	Kind   DatastoreKind `json:"kind"`
	Bucket string        `json:"bucket"`
	// Types lists the image types the datastore accepts.
	Types []string `json:"types"`
}

// DefaultDatastores are `default` (disks) and `files` (kernels, ramdisks,
// contexts).
func DefaultDatastores() []Datastore {
	return []Datastore{
		{Name: "default", Kind: KindImage, Bucket: "slipway-default", Types: imageTypes(KindImage)},
		{Name: "files", Kind: KindFile, Bucket: "slipway-files", Types: imageTypes(KindFile)},
	}
}

func imageTypes(k DatastoreKind) []string {
	if k == KindFile {
		return []string{"KERNEL", "RAMDISK", "CONTEXT"}
	}
	return []string{"OS", "CDROM", "DATABLOCK"}
}

// IsFileType reports whether an image type is a file type (KERNEL, RAMDISK,
// CONTEXT), which lives in a file datastore and cannot be persistent.
func IsFileType[T ~string](t T) bool {
	return slices.Contains(imageTypes(KindFile), string(t))
}

// accepts explains why ds cannot hold an image of type t, or returns nil.
func (ds Datastore) accepts(t string) error {
	if slices.Contains(ds.Types, t) {
		return nil
	}
	if IsFileType(t) {
		return fmt.Errorf("type %s is a file type: it belongs in a file datastore (such as \"files\"), not in %s datastore %q", t, ds.Kind, ds.Name)
	}
	return fmt.Errorf("type %s is a disk type: it belongs in an image datastore (such as \"default\"), not in %s datastore %q", t, ds.Kind, ds.Name)
}
