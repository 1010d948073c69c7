package converter

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"

	"github.com/slipway/slipway/pkg/diskspace"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/worker"
	"github.com/slipway/slipway/schemas"
)

// stepFailed is the saga step name of the failed event: its ID derives from
// it, so a retried job republishes the same ce-id and JetStream drops the
// duplicate (the converted event's step is its name, see worker.Answer).
const stepFailed = "converter-failed"

func (s *Service) handleImport(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.ConverterImport
	if err := decode(m, schemas.CommandConverterImport, &cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	if err := s.checkLocations(m, cmd.ImageID, cmd.Dest, cmd.Source); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseFetch, err)
	}
	j := s.start(m, schemas.CommandConverterImport, schemas.ConverterPhaseFetch, cmd.ImageID, cmd.Source, cmd.Dest)
	stop := s.jobs.Start(ctx, s.w, m, cmd.ImageID, j)
	out, err := s.runImport(ctx, j, cmd)
	stop()
	return s.finish(ctx, m, cmd.ImageID, cmd.Dest, out, err)
}

// checkLocations refuses, before anything is read or written, a dest that
// is not the one derived from the image and the saga (the command's
// correlation ID) in a datastore bucket, and an s3:// source outside the
// upload bucket and SLIPWAY_IMPORT_BUCKETS.
func (s *Service) checkLocations(m *bus.Msg, imageID int64, dest, source string) error {
	if err := s.cfg.Locations.CheckDest(dest, imageID, m.Envelope.CorrelationID); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	if err := s.cfg.Locations.CheckSource(source); err != nil {
		return fmt.Errorf("%w: %w", errInvalid, err)
	}
	return nil
}

// decode validates a command against its schema and decodes it; either
// failure wraps errInvalid.
func decode(m *bus.Msg, verb string, v any) error {
	return worker.Decode(Name, verb, m, v)
}

func (s *Service) start(m *bus.Msg, command string, phase schemas.ConverterPhase, imageID int64, src, dest string) *job {
	j := &job{command: command, source: src, dest: dest}
	j.Begin(m, imageID, phase)
	return j
}

// runImport fetches, inspects, converts and uploads one image.
func (s *Service) runImport(ctx context.Context, j *job, cmd schemas.ConverterImport) (schemas.ConverterConverted, error) {
	want, compress, err := s.plan(cmd)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, err)
	}
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("import-%d-*", cmd.ImageID))
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, fmt.Errorf("work directory: %w", err))
	}
	defer os.RemoveAll(dir)

	input, err := s.fetch(ctx, j, cmd, dir)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, err)
	}
	if cmd.File {
		return s.storeFile(ctx, j, cmd, input)
	}
	rep, err := s.inspect(ctx, j, cmd, input)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseInspect, err)
	}
	if want == "" {
		want = rep.Format
	}
	output, err := s.convert(ctx, j, input, rep, want, compress, dir)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseConvert, err)
	}
	info, err := s.upload(ctx, j, output, cmd.Dest)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseUpload, err)
	}
	return schemas.ConverterConverted{
		ImageID: cmd.ImageID, Dest: cmd.Dest, Format: schemas.DiskFormat(want),
		VirtualSize: rep.VirtualSize, Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum,
		DetectedFormat: schemas.DiskFormat(rep.Format),
	}, nil
}

// plan checks what the command asks for before anything is fetched.
func (s *Service) plan(cmd schemas.ConverterImport) (want inspect.Format, compress string, err error) {
	if cmd.Format != "" {
		if want, err = inspect.ParseFormat(string(cmd.Format)); err != nil {
			return "", "", fmt.Errorf("%w: %w", errInvalid, err)
		}
	}
	compress = string(cmd.Compression)
	if compress != "" && want != "" && want != inspect.QCOW2 {
		return "", "", fmt.Errorf("%w: compression %q needs format qcow2, not %q", errInvalid, compress, orDetected(want))
	}
	if _, _, err := blob.ParseURL(cmd.Dest); err != nil {
		return "", "", fmt.Errorf("%w: dest: %w", errInvalid, err)
	}
	return want, compress, nil
}

func orDetected(f inspect.Format) string {
	if f == "" {
		return "the detected one"
	}
	return string(f)
}

func (s *Service) fetch(ctx context.Context, j *job, cmd schemas.ConverterImport, dir string) (path string, err error) {
	ctx, span := s.span(ctx, "fetch", cmd.ImageID)
	defer func() { endSpan(span, err) }()
	j.SetPhase(schemas.ConverterPhaseFetch, 0)
	opts := s.cfg.Fetch
	opts.Store = s.store
	opts.Checksums = append([]string{cmd.Checksum}, cmd.Checksums...)
	opts.MaxBytes = min(s.cfg.MaxInputBytes, inputAllowance(s.virtualLimit(cmd)))
	opts.Bound = boundByHeader
	opts.Progress, opts.TempDir, opts.Verbatim = j.Update, dir, cmd.File
	res, err := fetch.File(ctx, cmd.Source, filepath.Join(dir, "input"), opts)
	if err != nil {
		return "", err
	}
	s.log.Info("fetched", "image_id", cmd.ImageID, "source", fetch.Redact(cmd.Source), "bytes", res.FetchedBytes,
		"compression", res.Compression, "size", res.Size)
	return res.Path, nil
}

// inspect checks the input with inspect and cross-checks qemu-img's view.
func (s *Service) inspect(ctx context.Context, j *job, cmd schemas.ConverterImport, path string) (rep inspect.Report, err error) {
	ctx, span := s.span(ctx, "inspect", cmd.ImageID)
	defer func() { endSpan(span, err) }()
	j.SetPhase(schemas.ConverterPhaseInspect, 0)
	rep, err = inspect.InspectFile(path, inspect.Limits{MaxVirtualSize: s.virtualLimit(cmd)})
	if err != nil {
		return rep, err
	}
	if cmd.SourceFormat != "" {
		declared, err := inspect.ParseFormat(string(cmd.SourceFormat))
		if err != nil {
			return rep, fmt.Errorf("%w: source_format: %w", errInvalid, err)
		}
		if err := inspect.Check(rep, declared); err != nil {
			return rep, err
		}
	}
	if rep.Format == inspect.LUKS {
		return rep, nil // qemu-img cannot open it without its secret
	}
	info, err := s.cfg.QemuImg.Info(ctx, path, rep.Format)
	if err != nil {
		return rep, err
	}
	if info.VirtualSize != rep.VirtualSize {
		return rep, fmt.Errorf("%w: inspection found a virtual size of %d bytes but qemu-img sees %d",
			qemuimg.ErrUnsafe, rep.VirtualSize, info.VirtualSize)
	}
	return rep, nil
}

// convert returns the file to upload: a qemu-img conversion of the input,
// always, so that what QEMU later opens writable is qemu-img's own output
// and never a hostile file's metadata (a qcow2 in, a qcow2 out is still
// rewritten). Only raw data and ISO images, which QEMU opens as raw bytes,
// are kept as they are.
func (s *Service) convert(ctx context.Context, j *job, input string, rep inspect.Report, want inspect.Format, compress, dir string) (out string, err error) {
	switch {
	case want == rep.Format && (want == inspect.Raw || want == inspect.ISO) && compress == "":
		return input, nil
	case compress != "" && want != inspect.QCOW2:
		return "", fmt.Errorf("%w: compression %q needs qcow2 output, and the image is %s", errInvalid, compress, want)
	case rep.Format == inspect.LUKS:
		return "", fmt.Errorf("%w: a LUKS image cannot be converted here (it needs its key); import it as luks", errInvalid)
	case want == inspect.ISO || want == inspect.LUKS:
		return "", fmt.Errorf("%w: cannot convert %s to %s", errInvalid, rep.Format, want)
	case want == inspect.Raw && rep.Format == inspect.ISO:
		return input, nil // an ISO is raw data already
	}
	ctx, span := s.span(ctx, "convert", j.ImageID)
	defer func() { endSpan(span, err) }()
	j.SetPhase(schemas.ConverterPhaseConvert, rep.VirtualSize)
	// inspect already ran qemu-img info on the input and matched its size.
	verified := &qemuimg.Info{Format: rep.Format.QemuFormat(), VirtualSize: rep.VirtualSize}
	opts := qemuimg.ConvertOptions{Compress: compress != "", CompressionType: compress, Progress: j.Update, Verified: verified}
	if err := s.ensureRoom(ctx, input, rep.Format, want, opts, dir); err != nil {
		return "", err
	}
	out = filepath.Join(dir, "output."+string(want))
	if err := s.cfg.QemuImg.Convert(ctx, input, rep.Format, out, want, opts); err != nil {
		return "", err
	}
	// The input is no longer needed: free its space before the upload.
	os.Remove(input)
	return out, nil
}

// ensureRoom checks dir can hold the conversion. Raw output is written
// sparse, so it needs about what the data needs as qcow2, not its virtual
// size.
func (s *Service) ensureRoom(ctx context.Context, input string, from, to inspect.Format, opts qemuimg.ConvertOptions, dir string) error {
	target, mopts := to, opts
	if to == inspect.Raw {
		target, mopts = inspect.QCOW2, qemuimg.ConvertOptions{}
	}
	mopts.Progress = nil
	need, err := s.cfg.QemuImg.Measure(ctx, input, from, target, mopts)
	if err != nil {
		s.log.Warn("qemu-img measure failed; converting without a space check", "err", err)
		return nil
	}
	return diskspace.Ensure(dir, need)
}

// upload stores path at dest, hashing it on the way.
func (s *Service) upload(ctx context.Context, j *job, path, dest string) (info blob.Info, err error) {
	ctx, span := s.span(ctx, "upload", j.ImageID)
	defer func() { endSpan(span, err) }()
	bucket, key, err := blob.ParseURL(dest)
	if err != nil {
		return info, fmt.Errorf("%w: dest: %w", errInvalid, err)
	}
	info, err = s.store.PutFile(ctx, bucket, key, path, func(size int64) error {
		j.SetPhase(schemas.ConverterPhaseUpload, size)
		if err := s.store.CheckFresh(ctx, bucket, key, j.ID); err != nil {
			return fmt.Errorf("dest: %w", err)
		}
		return nil
	}, j.Update, blob.OwnedBy(j.ID))
	if err != nil {
		return info, err
	}
	s.log.Info("stored", "image_id", j.ImageID, "dest", dest, "size", info.Size, "sha256", info.SHA256)
	return info, nil
}

// finish settles a job (worker.PhasedJobs.Settle): a converted event on
// success, a failed event on a terminal failure or on the last delivery,
// else an error to retry.
func (s *Service) finish(ctx context.Context, m *bus.Msg, imageID int64, dest string, out schemas.ConverterConverted, err error) error {
	return s.phased.Settle(ctx, m, imageID, dest, schemas.EventConverterConverted, out, err)
}

// asJobError is err as a jobError, a failure of the fetch when it is not one.
func asJobError(err error) *jobError {
	var je *jobError
	if errors.As(err, &je) {
		return je
	}
	return failed(schemas.ConverterPhaseFetch, err)
}

// reject answers a command that cannot be understood, as failed in phase.
func (s *Service) reject(ctx context.Context, m *bus.Msg, phase schemas.ConverterPhase, err error) error {
	return s.phased.Reject(ctx, m, phase, err)
}

// storeFile stores a KERNEL, RAMDISK or CONTEXT file byte for byte: it is
// not a disk, so there is nothing to inspect or convert, and its "virtual
// size" is its length.
func (s *Service) storeFile(ctx context.Context, j *job, cmd schemas.ConverterImport, path string) (schemas.ConverterConverted, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseFetch, err)
	}
	if fi.Size() == 0 {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseInspect,
			fmt.Errorf("%w: the file is empty (0 bytes)", errInvalid))
	}
	info, err := s.upload(ctx, j, path, cmd.Dest)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseUpload, err)
	}
	return schemas.ConverterConverted{
		ImageID: cmd.ImageID, Dest: cmd.Dest, Format: schemas.DiskFormatRaw,
		VirtualSize: fi.Size(), Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum,
	}, nil
}

// virtualLimit is the largest virtual size this import may have: the
// service's, or the command's when lower.
func (s *Service) virtualLimit(cmd schemas.ConverterImport) int64 {
	if cmd.MaxVirtualSize > 0 && cmd.MaxVirtualSize < s.cfg.MaxVirtualSize {
		return cmd.MaxVirtualSize
	}
	return s.cfg.MaxVirtualSize
}

// inputAllowance is how large an input with a virtual size of at most v
// may be once decompressed: a raw image is exactly its virtual size, and a
// sparse format's metadata (tables, headers, a VMDK's grain directory)
// stays well within a quarter of it. So a small gzip of zeros stops at the
// limit instead of filling the disk.
func inputAllowance(v int64) int64 {
	return v + min(v/4, 1<<30) + 64<<20
}

// boundByHeader lowers the input's cap once its header is out, when the
// header declares a virtual size (qcow2, VMDK, VDI, VHD).
func boundByHeader(head []byte) (int64, string) {
	f, v, ok := inspect.HeadVirtualSize(head)
	if !ok || v > math.MaxInt64/2 {
		return 0, ""
	}
	return inputAllowance(int64(v)), fmt.Sprintf("its %s header declares a virtual size of %s", f, inspect.HumanBytes(v))
}
