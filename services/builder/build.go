package builder

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/slipway/slipway/pkg/diskspace"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/flatten"
	"github.com/slipway/slipway/services/builder/fsimage"
	"github.com/slipway/slipway/services/builder/guestinit"
	"github.com/slipway/slipway/services/builder/tree"
)

// Label is the filesystem label of every built image.
const Label = "slipway-root"

// DefaultFilesystem is built when the command names none.
const DefaultFilesystem = "ext4"

// stepFailed is the saga step name of the failed event: its ID derives from
// it, so a retried job republishes the same ce-id and JetStream drops the
// duplicate (the built event's step is its name, see worker.Answer).
const stepFailed = "builder-failed"

func (s *Service) handleBuild(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.BuilderBuild
	if err := decode(m, &cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	if err := s.checkDest(m, cmd); err != nil {
		return s.reject(ctx, m, err)
	}
	j := &job{reference: cmd.Reference, url: fetch.Redact(cmd.URL), kind: string(cmd.Kind), dest: cmd.Dest}
	j.Begin(m, cmd.ImageID, schemas.BuilderPhasePull)
	stop := s.jobs.Start(ctx, s.w, m, cmd.ImageID, j)
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("build-%d-*", cmd.ImageID))
	if err != nil {
		stop()
		return s.finish(ctx, m, cmd, schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, fmt.Errorf("work directory: %w", err)))
	}
	// Removed after the answer is sent: deleting a flattened tree of
	// thousands of files (and the layers) need not delay the image's
	// READY. A crash before it leaves the directory to the next start's
	// cleanup of the work directory.
	defer os.RemoveAll(dir)
	out, err := s.runBuild(ctx, j, cmd, dir)
	stop()
	return s.finish(ctx, m, cmd, out, err)
}

// checkDest refuses, before anything is pulled, a dest that is not the one
// derived from the image and the saga (the command's correlation ID): the
// image's blob in a datastore bucket for kinds container and rootfs, the
// build staging object in the upload bucket for kind disk.
func (s *Service) checkDest(m *bus.Msg, cmd schemas.BuilderBuild) error {
	check := s.cfg.Locations.CheckDest
	if cmd.Kind == schemas.ContentKindDisk {
		check = s.cfg.Locations.CheckBuildDest
	}
	if err := check(cmd.Dest, cmd.ImageID, m.Envelope.CorrelationID); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return nil
}

// decode validates a command against its schema and decodes it; either
// failure wraps errInvalid.
func decode(m *bus.Msg, v any) error {
	return worker.Decode(Name, schemas.CommandBuilderBuild, m, v)
}

// target is where a job stores its disk.
type target struct{ bucket, key string }

// runBuild pulls the image and stores its disk at the command's dest,
// working in dir.
func (s *Service) runBuild(ctx context.Context, j *job, cmd schemas.BuilderBuild, dir string) (schemas.BuilderBuilt, error) {
	var dest target
	var err error
	if dest.bucket, dest.key, err = blob.ParseURL(cmd.Dest); err != nil {
		return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, fmt.Errorf("%w: dest: %w", errInvalid, err))
	}
	if cmd.Kind != schemas.ContentKindRootfs && (cmd.URL != "" || len(cmd.Checksums) > 0) {
		return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, fmt.Errorf("%w: url and checksums apply to kind rootfs only, not %s", errInvalid, cmd.Kind))
	}
	if cmd.Kind != schemas.ContentKindDisk {
		if err := checkFormat(cmd); err != nil {
			return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, err)
		}
		if err := s.checkGuestInit(); err != nil {
			return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, err)
		}
	}
	if cmd.Kind == schemas.ContentKindRootfs {
		return s.buildRootfs(ctx, j, cmd, dir, dest)
	}

	cache := filepath.Join(dir, "cache")
	img, err := s.pull(ctx, j, cmd, cache)
	if err != nil {
		return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, err)
	}
	// Before handleBuild removes dir: no download may still be writing
	// into the cache when the directory goes.
	defer img.Close()
	if cmd.Kind == schemas.ContentKindDisk {
		return s.storeDisk(ctx, j, cmd, img, dest)
	}
	return s.buildContainer(ctx, j, cmd, img, dir, dest)
}

// pull resolves the pinned image and starts fetching its layers into
// cache, verified; the next phase reads each layer as it arrives.
func (s *Service) pull(ctx context.Context, j *job, cmd schemas.BuilderBuild, cache string) (oci.Image, error) {
	j.SetPhase(schemas.BuilderPhasePull, 0)
	opts := s.cfg.Registry
	opts.Platform = cmd.Arch // only matters if the digest names an index
	opts.Insecure = opts.Insecure || s.insecure(cmd.Reference)
	if opts.MaxBytes == 0 {
		// What the flattener would unpack at most: a download past it
		// could only be refused later.
		opts.MaxBytes = s.cfg.Flatten.MaxBytes
	}
	opts.Progress = func(done, total int64) {
		// The downloads go on during the next phase, which reports its own.
		if j.Phase() == schemas.BuilderPhasePull {
			j.Update(done, total)
		}
	}
	img, err := oci.Pull(ctx, cmd.Reference, cache, opts)
	if err != nil {
		return nil, err
	}
	s.log.Info("pulling", "image_id", cmd.ImageID, "reference", cmd.Reference, "digest", img.Digest())
	return img, nil
}

// storeDisk uploads the disk file a disk-kind image carries, as it is:
// the converter inspects it like any upload.
func (s *Service) storeDisk(ctx context.Context, j *job, cmd schemas.BuilderBuild, img oci.Image, dest target) (schemas.BuilderBuilt, error) {
	name, rc, size, err := oci.DiskFile(ctx, img)
	if err != nil {
		return schemas.BuilderBuilt{}, failed(schemas.BuilderPhasePull, err)
	}
	defer rc.Close()
	info, err := s.upload(ctx, j, rc, size, dest)
	if err != nil {
		return schemas.BuilderBuilt{}, err
	}
	s.log.Info("stored the image's disk", "image_id", cmd.ImageID, "file", name, "dest", cmd.Dest, "size", info.Size)
	return schemas.BuilderBuilt{ImageID: cmd.ImageID, Dest: cmd.Dest, Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum,
		Digest: img.Digest()}, nil
}

// buildContainer flattens a container image, injects the guest init and
// makes a filesystem image of it in the command's format, stored at dest
// as the image's final blob: the filesystem is this builder's own work
// from a confined tree, so there is no untrusted disk for the converter to
// inspect, and skipping it saves a download and an upload of the whole
// raw image. Each intermediate is removed as soon as the next step has
// consumed it, so the work directory holds at most two of layers, tree
// and image at a time.
func (s *Service) buildContainer(ctx context.Context, j *job, cmd schemas.BuilderBuild, img oci.Image, dir string, dest target) (schemas.BuilderBuilt, error) {
	var out schemas.BuilderBuilt
	cfg, err := img.Config()
	if err != nil {
		return out, failed(schemas.BuilderPhasePull, err)
	}
	root := filepath.Join(dir, "root")
	t, err := s.flatten(ctx, j, img, root)
	if err != nil {
		if derr := img.Close(); derr != nil {
			return out, failed(schemas.BuilderPhasePull, derr) // a layer never arrived
		}
		return out, failed(schemas.BuilderPhaseFlatten, err)
	}
	if err := img.Wait(); err != nil { // at once: Flatten has read every layer
		return out, failed(schemas.BuilderPhasePull, err)
	}
	os.RemoveAll(filepath.Join(dir, "cache"))
	gcfg, mtime := containerConfig(cfg)
	out, err = s.makeDisk(ctx, j, cmd, dir, root, t, gcfg, mtime, dest)
	out.Digest = img.Digest()
	return out, err
}

// makeDisk injects the guest init with gcfg into the flattened root,
// makes the filesystem image of it in the command's format and uploads it
// to dest. The tree and the raw image are removed as soon as the next step
// has consumed them.
func (s *Service) makeDisk(ctx context.Context, j *job, cmd schemas.BuilderBuild, dir, root string, t *tree.Tree,
	gcfg guestinit.Config, mtime int64, dest target) (schemas.BuilderBuilt, error) {
	var out schemas.BuilderBuilt
	distro := s.distro(root, cmd)
	if err := inject(root, t, s.cfg.GuestInit, gcfg, mtime); err != nil {
		return out, failed(schemas.BuilderPhaseFlatten, err)
	}
	j.SetPhase(schemas.BuilderPhaseMkfs, 0)
	build := s.makeFilesystem
	if filesystemOf(cmd) == "ext4" && s.cfg.Ext4Writer != Ext4WriterMkfs {
		build = s.layoutExt4
	}
	size, info, err := build(ctx, j, cmd, dir, root, t, dest)
	if err != nil {
		return out, err
	}
	return schemas.BuilderBuilt{ImageID: cmd.ImageID, Dest: cmd.Dest, Format: formatOf(cmd),
		VirtualSize: size, Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum, Distro: distro}, nil
}

// makeFilesystem has mkfs copy the flattened tree at root into a raw
// image file, which it removes once the image is made, then stores the
// image at dest in the command's format. It returns the filesystem's size.
func (s *Service) makeFilesystem(ctx context.Context, j *job, cmd schemas.BuilderBuild, dir, root string, t *tree.Tree,
	dest target) (int64, blob.Info, error) {
	fs := filesystemOf(cmd)
	raw := filepath.Join(dir, "disk.raw")
	// mkfs copies the flattened tree into the image, so the image's blocks
	// need room beside the tree: refuse now rather than at ENOSPC.
	if err := diskspace.Ensure(dir, fsimage.Required(t, fs)<<20+64<<20); err != nil {
		return 0, blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	start := time.Now()
	res, err := fsimage.Build(ctx, root, t, raw, fsimage.Options{Filesystem: fs, SizeMiB: cmd.SizeMiB, Label: Label})
	if err != nil {
		return 0, blob.Info{}, failed(schemas.BuilderPhaseMkfs, err)
	}
	s.log.Info("made the filesystem", "image_id", cmd.ImageID, "filesystem", fs, "size", res.SizeBytes, "took", time.Since(start))
	os.RemoveAll(root)
	info, err := s.storeImage(ctx, j, cmd, raw, dest)
	return res.SizeBytes, info, err
}

// flatten applies the layers to root; progress counts the uncompressed
// bytes read (their total is unknown until the end).
func (s *Service) flatten(ctx context.Context, j *job, img oci.Image, root string) (*tree.Tree, error) {
	j.SetPhase(schemas.BuilderPhaseFlatten, 0)
	v1layers, err := img.Layers()
	if err != nil {
		return nil, err
	}
	start := time.Now()
	var read counter
	read.report = func(n int64) { j.Update(n, 0) }
	layers := make([]flatten.Layer, len(v1layers))
	for i, l := range v1layers {
		layers[i] = countedLayer{Layer: flatten.FromV1(l), c: &read}
	}
	t, err := flatten.Flatten(ctx, layers, root, s.cfg.Flatten)
	if err != nil {
		return nil, err
	}
	s.log.Info("flattened", "image_id", j.ImageID, "layers", len(layers), "entries", t.Len(), "bytes_read", read.n.Load(), "took", time.Since(start))
	return t, nil
}

// upload stores size bytes of r at dest, SHA-256 on the way, once it has
// checked that dest is no other command's object. The job is in phase
// upload from then on, its progress the bytes stored; a failure is the
// upload's.
func (s *Service) upload(ctx context.Context, j *job, r io.Reader, size int64, dest target) (blob.Info, error) {
	j.SetPhase(schemas.BuilderPhaseUpload, size)
	if err := s.store.CheckFresh(ctx, dest.bucket, dest.key, j.ID); err != nil {
		return blob.Info{}, failed(schemas.BuilderPhaseUpload, fmt.Errorf("%w: dest: %w", errInvalid, err))
	}
	start := time.Now()
	info, err := s.store.Put(ctx, dest.bucket, dest.key, r, size, blob.OwnedBy(j.ID), blob.Progress(func(n int64) { j.Update(n, size) }))
	if err != nil {
		return info, failed(schemas.BuilderPhaseUpload, err)
	}
	s.log.Info("stored", "image_id", j.ImageID, "dest", j.dest, "size", info.Size, "sha256", info.SHA256, "took", time.Since(start))
	return info, nil
}

// uploadFile stores the file at path at dest (upload).
func (s *Service) uploadFile(ctx context.Context, j *job, path string, dest target) (blob.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return blob.Info{}, failed(schemas.BuilderPhaseUpload, err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return blob.Info{}, failed(schemas.BuilderPhaseUpload, err)
	}
	return s.upload(ctx, j, f, st.Size(), dest)
}

// finish settles a job (worker.PhasedJobs.Settle): a built event on
// success, a failed event on a terminal failure or on the last delivery,
// else an error to retry.
func (s *Service) finish(ctx context.Context, m *bus.Msg, cmd schemas.BuilderBuild, out schemas.BuilderBuilt, err error) error {
	return s.phased.Settle(ctx, m, cmd.ImageID, cmd.Dest, schemas.EventBuilderBuilt, out, err)
}

// reject answers a command that cannot be understood.
func (s *Service) reject(ctx context.Context, m *bus.Msg, err error) error {
	return s.phased.Reject(ctx, m, schemas.BuilderPhasePull, err)
}

// counter adds up the bytes read through every layer of a flatten.
type counter struct {
	n      atomic.Int64
	report func(int64)
}

// countedLayer counts what Flatten reads of a layer.
type countedLayer struct {
	flatten.Layer
	c *counter
}

func (l countedLayer) Uncompressed() (io.ReadCloser, error) {
	rc, err := l.Layer.Uncompressed()
	if err != nil {
		return nil, err
	}
	return &countingReader{ReadCloser: rc, c: l.c}, nil
}

type countingReader struct {
	io.ReadCloser
	c *counter
}

func (r *countingReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	r.c.report(r.c.n.Add(int64(n)))
	return n, err
}
