package builder

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/builder/flatten"
)

// buildRootfs makes a disk of a root filesystem tarball (a marketplace's
// rootfs): the tarball streams from its url through pkg/fetch (resumed,
// decompressed, hashed) straight into the flattener as a single layer, so
// the download overlaps the extraction and no tarball is ever written to
// disk. Its checksums are checked at the end of the stream, before mkfs:
// a tampered tarball never becomes a filesystem, and nothing is uploaded.
// The guest init then runs the distro's own /sbin/init.
func (s *Service) buildRootfs(ctx context.Context, j *job, cmd schemas.BuilderBuild, dir string, dest target) (schemas.BuilderBuilt, error) {
	var out schemas.BuilderBuilt
	if err := s.cfg.Locations.CheckSource(cmd.URL); err != nil {
		return out, failed(schemas.BuilderPhasePull, fmt.Errorf("%w: url: %w", errInvalid, err))
	}
	if cmd.Reference != "" {
		return out, failed(schemas.BuilderPhasePull, fmt.Errorf("%w: a rootfs is built from its url: reference does not apply", errInvalid))
	}
	j.SetPhase(schemas.BuilderPhasePull, 0)
	st, err := s.openRootfs(ctx, j, cmd)
	if err != nil {
		return out, fetchFailed(err)
	}
	defer st.Close()
	s.log.Info("streaming a rootfs", "image_id", cmd.ImageID, "url", j.url, "compression", st.Compression())
	j.SetPhase(schemas.BuilderPhaseFlatten, 0)
	root := filepath.Join(dir, "root")
	layer := &streamLayer{name: j.url, s: st}
	t, err := flatten.Flatten(ctx, []flatten.Layer{layer}, root, s.cfg.Flatten)
	if err != nil {
		if serr := st.Err(); serr != nil {
			return out, fetchFailed(serr) // the download failed, not the tarball
		}
		return out, failed(schemas.BuilderPhaseFlatten, err)
	}
	// The tar reader stops at the end-of-archive blocks: Verify fetches and
	// hashes what follows them before any checksum can be trusted.
	if err := st.Verify(); err != nil {
		return out, fetchFailed(err)
	}
	s.log.Info("flattened a rootfs", "image_id", cmd.ImageID, "entries", t.Len(),
		"fetched", st.FetchedBytes(), "sha256", st.Sums()[fetch.SHA256])
	out, err = s.makeDisk(ctx, j, cmd, dir, root, t, rootfsConfig(), 0, dest)
	out.Digest = fetch.SHA256 + ":" + st.Sums()[fetch.SHA256] // what was built from
	return out, err
}

// openRootfs starts the download: the guard of registry addresses also
// guards rootfs urls, s3:// urls read the blob store, and the stream is
// capped where the flattener would stop anyway.
func (s *Service) openRootfs(ctx context.Context, j *job, cmd schemas.BuilderBuild) (*fetch.Stream, error) {
	opts := fetch.Options{Store: s.store, Guard: s.cfg.Registry.Guard, Checksums: cmd.Checksums,
		MaxBytes: s.cfg.Flatten.MaxBytes, XZBinary: s.cfg.XZBinary}
	if opts.MaxBytes == 0 {
		opts.MaxBytes = flatten.DefaultMaxBytes
	}
	// Fetched bytes of the whole: the flatten phase reports them too, its
	// own total being unknown until the end.
	opts.Progress = j.Update
	return fetch.Open(ctx, cmd.URL, opts)
}

// fetchFailed classifies a failure of the download: a refused or missing
// source, a checksum mismatch or corrupt compressed data is final; a
// network failure or a source that could not be resumed is retried.
func fetchFailed(err error) *jobError {
	terminal := fetch.IsPermanent(err) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	return &jobError{Phase: schemas.BuilderPhasePull, Err: err, Terminal: terminal}
}

// streamLayer is the rootfs stream as the flattener's one layer.
type streamLayer struct {
	name   string
	s      *fetch.Stream
	opened bool
}

func (l *streamLayer) Digest() string { return l.name }

// Uncompressed hands the stream over once: it cannot be read twice.
func (l *streamLayer) Uncompressed() (io.ReadCloser, error) {
	if l.opened {
		return nil, errors.New("the rootfs stream was already read")
	}
	l.opened = true
	return io.NopCloser(l.s), nil
}
