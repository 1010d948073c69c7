package converter

import (
	"context"
	"fmt"
	"os"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/converter/blank"
)

func (s *Service) handleCreateBlank(ctx context.Context, m *bus.Msg) error {
	var cmd schemas.ConverterCreateBlank
	if err := decode(m, schemas.CommandConverterCreateBlank, &cmd); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseMkfs, err)
	}
	if err := s.checkLocations(m, cmd.ImageID, cmd.Dest, ""); err != nil {
		return s.reject(ctx, m, schemas.ConverterPhaseMkfs, err)
	}
	j := s.start(m, schemas.CommandConverterCreateBlank, schemas.ConverterPhaseMkfs, cmd.ImageID, "", cmd.Dest)
	stop := s.jobs.Start(ctx, s.w, m, cmd.ImageID, j)
	out, err := s.runCreateBlank(ctx, j, cmd)
	stop()
	return s.finish(ctx, m, cmd.ImageID, cmd.Dest, out, err)
}

func (s *Service) runCreateBlank(ctx context.Context, j *job, cmd schemas.ConverterCreateBlank) (schemas.ConverterConverted, error) {
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("blank-%d-*", cmd.ImageID))
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseMkfs, fmt.Errorf("work directory: %w", err))
	}
	defer os.RemoveAll(dir)
	path, err := s.mkfs(ctx, j, cmd, dir)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseMkfs, err)
	}
	info, err := s.upload(ctx, j, path, cmd.Dest)
	if err != nil {
		return schemas.ConverterConverted{}, failed(schemas.ConverterPhaseUpload, err)
	}
	return schemas.ConverterConverted{
		ImageID: cmd.ImageID, Dest: cmd.Dest, Format: cmd.Format,
		VirtualSize: cmd.SizeMiB << 20, Size: info.Size, SHA256: info.SHA256, S3Checksum: info.S3Checksum,
	}, nil
}

func (s *Service) mkfs(ctx context.Context, j *job, cmd schemas.ConverterCreateBlank, dir string) (path string, err error) {
	ctx, span := s.span(ctx, "mkfs", cmd.ImageID)
	defer func() { endSpan(span, err) }()
	j.SetPhase(schemas.ConverterPhaseMkfs, 0)
	if cmd.SizeMiB<<20 > s.cfg.MaxVirtualSize {
		return "", fmt.Errorf("%w: %d MiB exceeds the limit of %d MiB", errInvalid, cmd.SizeMiB, s.cfg.MaxVirtualSize>>20)
	}
	return blank.Create(ctx, dir, cmd.SizeMiB, string(cmd.FS), string(cmd.Format), s.cfg.QemuImg)
}
