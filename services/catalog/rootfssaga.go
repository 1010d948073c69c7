package catalog

import (
	"context"

	"github.com/slipway/slipway/schemas"
)

// The rootfs import: build (the builder streams the tarball, checks its
// checksums, makes a bootable disk in the image's format and stores it as
// the image's blob) → commit. Like a container filesystem, the disk is the
// builder's own work from a confined tree: no resolve step, no converter
// pass. It shares the docker import's build and commit steps.
const KindRootfsImport = "rootfs-import"

// DefaultRootfsFormat is the format of a rootfs image when the command
// names none: a filesystem image is mostly empty space.
const DefaultRootfsFormat = schemas.DiskFormatQcow2

// rootfsFlow declares the rootfs import.
func (s *Service) rootfsFlow() *flow {
	return &flow{
		kind: KindRootfsImport, what: "import", reporter: "the builder", fail: s.failImportCode,
		phases: []phase{s.buildPhase("the rootfs "), s.commitPhase("import")},
	}
}

// startRootfsSaga records a rootfs import (d, see rootfsData) in its
// build phase.
func (s *Service) startRootfsSaga(ctx context.Context, id string, d dockerData) error {
	return s.start(ctx, id, KindRootfsImport, d.ImageID, d, d.Dest)
}

// rootfsData is a rootfs import's saga state: the docker import's, with
// the tarball as its URL, no reference to resolve; format is the one
// planned, checksums all those of the command.
func rootfsData(base importData, req schemas.ImageCreate, format schemas.DiskFormat, checksums []string) dockerData {
	return dockerData{importData: base, URL: req.Path, Kind: schemas.ContentKindRootfs, Format: format,
		Compression: req.Compression, SizeMiB: req.SizeMiB, Filesystem: req.FS, Checksums: checksums}
}
