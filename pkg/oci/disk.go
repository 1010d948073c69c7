package oci

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/stream"
	"github.com/klauspost/compress/gzip"
)

// ErrNotDisk is returned by DiskFile for a container image.
var ErrNotDisk = errors.New("not a disk image: no disk file under /disk/ or /base_image/")

// DiskFile streams the single disk file of a disk-kind image out of its
// layer: its path in the image ("/disk/x.qcow2"), its content, and its size.
// The reader fails at EOF if the layer does not match its diff_id.
func DiskFile(ctx context.Context, img Image) (name string, rc io.ReadCloser, size int64, err error) {
	layers, err := img.Layers()
	if err != nil {
		return "", nil, 0, err
	}
	found, err := findDisk(layers)
	if err != nil {
		return "", nil, 0, err
	}
	if found.path == "" {
		return "", nil, 0, ErrNotDisk
	}
	lrc, err := layers[found.layer].Uncompressed()
	if err != nil {
		return "", nil, 0, err
	}
	tr := tar.NewReader(lrc)
	for {
		h, err := tr.Next()
		if err != nil {
			lrc.Close()
			return "", nil, 0, fmt.Errorf("layer %d: looking for %s: %w", found.layer+1, found.path, err)
		}
		if h.Typeflag == tar.TypeReg && "/"+cleanEntry(h.Name) == found.path {
			return found.path, &diskReader{ctx: ctx, r: tr, c: lrc}, h.Size, nil
		}
	}
}

// diskReader reads the disk file's entry and closes the layer.
type diskReader struct {
	ctx context.Context
	r   io.Reader
	c   io.Closer
}

func (d *diskReader) Read(b []byte) (int, error) {
	if err := d.ctx.Err(); err != nil {
		return 0, err
	}
	return d.r.Read(b)
}

func (d *diskReader) Close() error { return d.c.Close() }

// Layout is where a disk goes in an image and who owns it.
type Layout struct {
	Dir      string // directory under the root: DirKubeVirt or DirRancherVM
	UID, GID int
	Mode     int64
	DirMode  int64
}

// Layouts of disk images.
var (
	// KubeVirtLayout is a KubeVirt containerDisk: /disk/<file>, owned by
	// the qemu user (107:107) and readable only by it, as KubeVirt expects.
	KubeVirtLayout = Layout{Dir: DirKubeVirt, UID: 107, GID: 107, Mode: 0o440, DirMode: 0o555}
	// RancherVMLayout is RancherVM's /base_image/<file>, root-owned.
	RancherVMLayout = Layout{Dir: DirRancherVM, UID: 0, GID: 0, Mode: 0o444, DirMode: 0o555}
)

// PushDisk pushes diskPath as a KubeVirt containerDisk image to ref: FROM
// scratch, one gzip layer holding /disk/<basename>. Returns the manifest
// digest. See PushDiskLayout.
func PushDisk(ctx context.Context, ref string, diskPath string, opts Options) (digest string, err error) {
	return PushDiskLayout(ctx, ref, diskPath, KubeVirtLayout, opts)
}

// PushDiskLayout pushes diskPath as a FROM-scratch image with one layer
// holding <layout.Dir>/<basename>, configured for opts' platform. The layer
// is built, gzip-compressed and uploaded in one streaming pass over the file
// (stream.Layer), so a disk of any size costs one read and bounded memory;
// tarball.LayerFromOpener would read it three times (diff_id, digest,
// upload). Slipway's import recognizes both layouts; KubeVirt boots the
// KubeVirt layout as a containerDisk, and RancherVM finds its disk in
// /base_image/ (RancherVM's own images add it on top of a base image; this
// one carries the disk alone).
func PushDiskLayout(ctx context.Context, ref string, diskPath string, layout Layout, opts Options) (digest string, err error) {
	s, err := opts.settings()
	if err != nil {
		return "", err
	}
	tag, err := name.NewTag(ref, s.nameOptions()...)
	if err != nil {
		return "", fmt.Errorf("push to %q: want registry/repository[:tag]: %w", ref, err)
	}
	fi, err := os.Stat(diskPath)
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("push %s: not a regular file", diskPath)
	}
	img, err := diskImage(diskPath, fi.Size(), layout, s.platform)
	if err != nil {
		return "", err
	}
	ropts, cred, err := s.remoteOptions(ctx, tag.Context())
	if err != nil {
		return "", err
	}
	if err := remote.Write(tag, img, ropts...); err != nil {
		return "", registryError(err, tag, cred)
	}
	h, err := img.Digest()
	if err != nil {
		return "", err
	}
	return h.String(), nil
}

// diskImage is the one-layer image; the layer streams from the file when
// remote.Write reads it.
func diskImage(diskPath string, size int64, layout Layout, p v1.Platform) (v1.Image, error) {
	layer := stream.NewLayer(diskTar(diskPath, size, layout), stream.WithCompressionLevel(gzip.BestSpeed))
	cfg := &v1.ConfigFile{
		Architecture: p.Architecture,
		OS:           p.OS,
		Variant:      p.Variant,
		RootFS:       v1.RootFS{Type: "layers"},
		Config:       v1.Config{Labels: map[string]string{"io.slipway.disk": "/" + layout.Dir + "/" + filepath.Base(diskPath)}},
	}
	base, err := mutate.ConfigFile(empty.Image, cfg)
	if err != nil {
		return nil, err
	}
	return mutate.AppendLayers(base, layer)
}

// epoch is the timestamp of every entry, so the same disk gives the same digest.
var epoch = time.Unix(0, 0)

// diskTar streams a tar of the directory and the disk file.
func diskTar(diskPath string, size int64, layout Layout) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() {
		pw.CloseWithError(writeDiskTar(pw, diskPath, size, layout))
	}()
	return pr
}

func writeDiskTar(w io.Writer, diskPath string, size int64, layout Layout) error {
	f, err := os.Open(diskPath)
	if err != nil {
		return err
	}
	defer f.Close()
	tw := tar.NewWriter(w)
	dir := &tar.Header{Typeflag: tar.TypeDir, Name: layout.Dir + "/", Mode: layout.DirMode, ModTime: epoch}
	if err := tw.WriteHeader(dir); err != nil {
		return err
	}
	file := &tar.Header{Typeflag: tar.TypeReg, Name: layout.Dir + "/" + filepath.Base(diskPath), Size: size,
		Mode: layout.Mode, Uid: layout.UID, Gid: layout.GID, ModTime: epoch}
	if err := tw.WriteHeader(file); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, size); err != nil {
		return fmt.Errorf("reading %s (%d bytes when the push began): %w", diskPath, size, err)
	}
	return tw.Close()
}
