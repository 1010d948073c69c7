package catalog

import (
	"context"
	"fmt"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/saga"
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
		phases: []phase{{
			name:       PhaseBuild,
			commands:   []string{"builder.build"},
			on:         map[string]eventHandler{evtBuilt: s.built, evtBuildFailed: s.buildFailed},
			deadline:   s.cfg.BuildDeadline,
			compensate: s.compensateImport,
			expired: func(sg *saga.Saga, d time.Duration) string {
				return fmt.Sprintf("building a disk from the rootfs %s did not finish within %s", fetch.Redact(dockerURL(sg)), d)
			},
		}, s.commitPhase("import")},
	}
}

// planRootfs applies the rules of a rootfs import (rootfs: true): an OS
// disk the builder makes from a tarball at an http(s):// or s3:// path.
func (s *Service) planRootfs(p *plan, stager string) error {
	req := p.req
	switch {
	case p.docker != nil:
		return refuse("rootfs marks a root filesystem tarball at an http(s):// or s3:// path: a docker:// image is built from its registry without it")
	case req.Path == "":
		return refuse("rootfs needs a path: the http(s):// or s3:// URL of the root filesystem tarball")
	case p.typ != schemas.ImageTypeOS:
		return refuse("a rootfs becomes a bootable OS disk, not %s", p.typ)
	case req.SourceFormat != "":
		return refuse("source_format %s describes a disk to import: a rootfs is a tarball (tar, gzip, xz or zstd, detected)", req.SourceFormat)
	}
	p.format = req.Format
	if p.format == "" {
		p.format = DefaultRootfsFormat
	}
	if p.format != schemas.DiskFormatRaw && p.format != schemas.DiskFormatQcow2 {
		return refuse("a rootfs is stored as raw or qcow2, not %s", p.format)
	}
	if req.Compression != "" && p.format != schemas.DiskFormatQcow2 {
		return refuse("compression %s applies to qcow2 only, not to format %s", req.Compression, p.format)
	}
	if err := s.planSource(p, stager); err != nil {
		return err
	}
	p.rootfs = true
	return nil
}

// startRootfsSaga records a rootfs import in its build phase.
func (s *Service) startRootfsSaga(ctx context.Context, id string, p plan, base importData) error {
	return s.start(ctx, id, KindRootfsImport, base.ImageID, rootfsData(p, base), base.Dest)
}

// rootfsData is a rootfs import's saga state: the docker import's, with
// the tarball as its URL, no reference to resolve.
func rootfsData(p plan, base importData) dockerData {
	return dockerData{importData: base, URL: p.req.Path, Kind: schemas.ContentKindRootfs, Format: p.format,
		Compression: p.req.Compression, SizeMiB: p.req.SizeMiB, Filesystem: p.req.FS, Checksums: p.checksums}
}

// sendRootfsBuild asks the builder for the disk of a new rootfs import.
func (s *Service) sendRootfsBuild(ctx context.Context, m *bus.Msg, sagaID string, p plan, base importData) error {
	return s.sendBuild(ctx, m, sagaID, rootfsData(p, base))
}
