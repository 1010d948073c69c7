package converter

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/schemas"
)

// The snapshot command: the catalog's image-snapshot-revert, -delete and
// -flatten. The work is done here, not in the catalog, because it needs
// the whole blob on local disk. The source (the image's blob) is only
// read; the result goes to a new key derived from the image and the saga,
// so a crash at any point leaves the image's blob as it was and the
// catalog decides which blob the record names.

func (s *Service) handleSnapshot(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.ConverterSnapshot
	if err := decode(m, schemas.CommandConverterSnapshot, &cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	if err := s.checkSnapshotLocations(m, cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	j := s.start(m, schemas.CommandConverterSnapshot, schemas.ConverterPhaseFetch, cmd.ImageID, cmd.Source, cmd.Dest)
	stop := s.jobs.Start(ctx, s.w, m, cmd.ImageID, j)
	out, err := s.runSnapshot(ctx, j, cmd)
	stop()
	return s.finish(ctx, m, cmd.ImageID, cmd.Dest, out, err)
}

// checkSnapshotLocations refuses a dest that is not derived from the image
// and the saga, and a source that is not one of this image's blobs.
func (s *Service) checkSnapshotLocations(m *bus.Msg, cmd schemas.ConverterSnapshot) error {
	if err := s.cfg.Locations.CheckDest(cmd.Dest, cmd.ImageID, m.Envelope.CorrelationID); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	if err := s.cfg.Locations.CheckImageBlob(cmd.Source); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	_, key, _ := blob.ParseURL(cmd.Source)
	if !strings.HasPrefix(key, "images/"+strconv.FormatInt(cmd.ImageID, 10)+"/") {
		return fmt.Errorf("%w: source %s is not a blob of image %d", errInvalid, cmd.Source, cmd.ImageID)
	}
	if cmd.Source == cmd.Dest {
		return fmt.Errorf("%w: source and dest are the same object: the source is never written", errInvalid)
	}
	return nil
}

// runSnapshot downloads the blob, checks it is a plain qcow2, applies the
// operation and uploads the result.
func (s *Service) runSnapshot(ctx context.Context, j *job, cmd schemas.ConverterSnapshot) (schemas.ConverterConverted, error) {
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("snapshot-%d-*", cmd.ImageID))
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, fmt.Errorf("work directory: %w", err))
	}
	defer os.RemoveAll(dir)
	input := filepath.Join(dir, "disk.qcow2")
	if err := s.download(ctx, j, cmd.Source, input); err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, err)
	}
	info, err := s.cfg.QemuImg.Info(ctx, input, inspect.QCOW2)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseInspect, err)
	}
	j.SetPhase(schemas.ConverterPhaseConvert, 0)
	output, err := s.applySnapshot(ctx, cmd, input, filepath.Join(dir, "out.qcow2"))
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseConvert, err)
	}
	up, err := s.upload(ctx, j, output, cmd.Dest)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseUpload, err)
	}
	return schemas.ConverterConverted{ImageID: cmd.ImageID, Dest: cmd.Dest, Format: schemas.DiskFormatQcow2,
		VirtualSize: info.VirtualSize, Size: up.Size, SHA256: up.SHA256, S3Checksum: up.S3Checksum, DetectedFormat: schemas.DiskFormatQcow2}, nil
}

// applySnapshot runs the operation; it returns the file to upload.
func (s *Service) applySnapshot(ctx context.Context, cmd schemas.ConverterSnapshot, input, flat string) (string, error) {
	q := s.cfg.QemuImg
	list, err := q.Snapshots(ctx, input)
	if err != nil {
		return "", err
	}
	found := false
	for _, sn := range list {
		found = found || sn.Name == cmd.Snapshot
	}
	if !found {
		// The catalog's record names a snapshot the blob does not hold:
		// nothing to do that would be right.
		return "", fmt.Errorf("%w: image %d's blob has no internal snapshot named %q", errInvalid, cmd.ImageID, cmd.Snapshot)
	}
	switch cmd.Op {
	case schemas.SnapshotOpRevert:
		return input, q.SnapshotApply(ctx, input, cmd.Snapshot)
	case schemas.SnapshotOpDelete:
		return input, q.SnapshotDelete(ctx, input, cmd.Snapshot)
	case schemas.SnapshotOpFlatten:
		return flat, q.Flatten(ctx, input, cmd.Snapshot, flat)
	}
	return "", fmt.Errorf("%w: unknown snapshot operation %q", errInvalid, cmd.Op)
}

// download copies an object to a local file.
func (s *Service) download(ctx context.Context, j *job, src, path string) error {
	bucket, key, err := blob.ParseURL(src)
	if err != nil {
		return fmt.Errorf("%w: source: %w", errInvalid, err)
	}
	r, size, err := s.store.Get(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", src, err)
	}
	defer r.Close()
	if size > s.cfg.MaxInputBytes {
		return fmt.Errorf("%w: %s has %d bytes, more than the limit of %d", errInvalid, src, size, s.cfg.MaxInputBytes)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	n, err := io.Copy(f, io.LimitReader(r, size))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = fmt.Errorf("read %s: %d of %d bytes", src, n, size)
	}
	j.Update(n, size)
	return err
}
