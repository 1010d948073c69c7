package catalog

import (
	"reflect"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/schemas"
)

// TestRootfsImportLifecycle: image-create with rootfs sends builder.build
// kind rootfs (no resolve, no converter) with every checksum, and the
// builder's disk becomes the READY image with its distro and the
// tarball's digest.
func TestRootfsImportLifecycle(t *testing.T) {
	h := newDockerHarness(t)
	url := "https://images.example.org/debian/bookworm/rootfs.tar.xz"
	sha256sum, md5sum := "sha256:"+strings.Repeat("a", 64), "md5:"+strings.Repeat("b", 32)
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "deb", Path: url, Rootfs: true, SizeMiB: 512,
		Checksum: sha256sum, Checksums: []string{md5sum, sha256sum}})
	var bc schemas.BuilderBuild
	bcmd := h.commandFor(builderService, "build", 0, &bc)
	img := h.mustShow(0)
	if img.Type != schemas.ImageTypeOS || img.Size != 512<<20 || img.Origin != url {
		t.Fatalf("image %+v", img)
	}
	wantDest := "s3://" + h.cfg.Datastores[0].Bucket + "/images/0/" + img.SagaID + "/disk.qcow2"
	want := schemas.BuilderBuild{ImageID: 0, Kind: schemas.ContentKindRootfs, URL: url, Checksums: []string{sha256sum, md5sum},
		SizeMiB: 512, Format: schemas.DiskFormatQcow2, Dest: wantDest}
	if !reflect.DeepEqual(bc, want) {
		t.Fatalf("build command\n got %+v\nwant %+v", bc, want)
	}
	stored := []byte(strings.Repeat("qcow2 of the rootfs ", 100))
	h.put(bc.Dest, stored)
	h.reply(h.builder, bcmd, "built", 0, schemas.BuilderBuilt{ImageID: 0, Dest: bc.Dest, Format: schemas.DiskFormatQcow2,
		VirtualSize: 512 << 20, Size: int64(len(stored)), SHA256: sha(stored), Distro: "debian", Digest: sha256sum})
	h.waitState(0, StateReady)
	got := h.mustShow(0)
	wantAttrs := map[string]string{AttrSourceDigest: sha256sum, AttrDistro: "debian"}
	if got.Format != schemas.DiskFormatQcow2 || !reflect.DeepEqual(got.Attributes, wantAttrs) {
		t.Fatalf("image %+v, want qcow2 with %v", got, wantAttrs)
	}
	if asked := h.cmds.All(func(m *nats.Msg) bool { return strings.Contains(m.Subject, marketService) }); len(asked) != 0 {
		t.Error("a rootfs import asked market-dockerhub")
	}
}

// TestRootfsImportBuildFailure: the builder's checksum failure ends the
// image in ERROR with its message; what was written is deleted.
func TestRootfsImportBuildFailure(t *testing.T) {
	h := newDockerHarness(t)
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "bad", Path: "https://images.example.org/r.tar.gz", Rootfs: true,
		Checksums: []string{"sha512:" + strings.Repeat("c", 128)}})
	var bc schemas.BuilderBuild
	bcmd := h.commandFor(builderService, "build", 0, &bc)
	if bc.Format != schemas.DiskFormatQcow2 || len(bc.Checksums) != 1 {
		t.Fatalf("build command %+v", bc)
	}
	h.put(bc.Dest, []byte("partial"))
	msg := "checksum mismatch for https://images.example.org/r.tar.gz: expected sha512:" + strings.Repeat("c", 128) + ", got sha512:" + strings.Repeat("d", 128)
	h.reply(h.builder, bcmd, "failed", 0, schemas.Failure{Code: schemas.CodeInvalidInput, ImageID: new(int64(0)), Phase: "pull", Error: msg})
	if ev := h.waitState(0, StateError); ev.Error != "build (pull): "+msg {
		t.Fatalf("error = %q", ev.Error)
	}
	waitFor(t, "compensation to delete the build", func() bool { return !h.exists(bc.Dest) })
}

func TestRootfsImportRefusals(t *testing.T) {
	h := newDockerHarness(t)
	sha := "sha256:" + strings.Repeat("0", 64)
	for _, tc := range []struct {
		req  schemas.ImageCreate
		want string
	}{
		{schemas.ImageCreate{Name: "a", Path: "docker://nginx", Rootfs: true}, "a docker:// image is built from its registry"},
		{schemas.ImageCreate{Name: "b", Path: "https://x.example/r.tar", Rootfs: true, Type: schemas.ImageTypeDatablock}, "a rootfs becomes a bootable OS disk, not DATABLOCK"},
		{schemas.ImageCreate{Name: "c", Path: "https://x.example/r.tar", Rootfs: true, SourceFormat: schemas.DiskFormatRaw}, "source_format raw describes a disk"},
		{schemas.ImageCreate{Name: "d", Path: "https://x.example/r.tar", Rootfs: true, Format: schemas.DiskFormatVMDK}, "stored as raw or qcow2, not vmdk"},
		{schemas.ImageCreate{Name: "e", Path: "https://x.example/r.tar", Rootfs: true, Format: schemas.DiskFormatRaw, Compression: schemas.CompressionZstd}, "qcow2 only"},
		{schemas.ImageCreate{Name: "f", Path: "s3://" + h.cfg.Datastores[0].Bucket + "/images/1/x/disk.raw", Rootfs: true}, "is a datastore bucket"},
		{schemas.ImageCreate{Name: "g", SizeMiB: 64, Rootfs: true}, "rootfs needs a path"},
		{schemas.ImageCreate{Name: "h", Path: "https://x.example/d.raw", Checksums: []string{sha, "sha256:" + strings.Repeat("1", 64)}}, "checksums names sha256 twice"},
		{schemas.ImageCreate{Name: "i", Path: "https://x.example/d.raw", Checksum: sha, Checksums: []string{"sha256:" + strings.Repeat("1", 64)}}, "two sha256 checksums given"},
		{schemas.ImageCreate{Name: "j", Path: "docker://nginx", Checksums: []string{sha}}, "pinned by its manifest digest"},
	} {
		h.refused(tc.req, tc.want)
	}
	if imgs := h.list(); len(imgs) != 0 {
		t.Fatalf("refused creates made images: %+v", imgs)
	}
}

// TestDockerImportRefusesResolvedRootfs: a docker:// image never resolves
// to kind rootfs; a market that says so fails the import.
func TestDockerImportRefusesResolvedRootfs(t *testing.T) {
	h := newDockerHarness(t)
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "odd", Path: "docker://registry.local:5000/team/app"})
	h.resolve(0, schemas.ContentKindRootfs)
	if ev := h.waitState(0, StateError); !strings.Contains(ev.Error, "resolved to kind rootfs") {
		t.Fatalf("error = %q", ev.Error)
	}
}
