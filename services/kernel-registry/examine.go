package kernelregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/kernel-registry/kernel"
)

// handleCatalogEvent dispatches the catalog's events.
func (s *Service) handleCatalogEvent(ctx context.Context, m *bus.Msg) error {
	if m.Name == schemas.EventCatalogImageDeleted {
		return s.handleImageDeleted(ctx, m)
	}
	return s.handleImageUpdated(ctx, m)
}

// handleImageDeleted forgets a deleted KERNEL image and removes its kept
// vmlinux, which has no other owner.
func (s *Service) handleImageDeleted(ctx context.Context, m *bus.Msg) error {
	var d schemas.ImageDeleted
	if err := json.Unmarshal(m.Data, &d); err != nil {
		return bus.Terminal(fmt.Errorf("catalog image-deleted: %w", err))
	}
	k, err := s.getKernel(ctx, d.ID)
	if errors.Is(err, errNoKernel) {
		return nil // not a kernel
	}
	if err != nil {
		return err
	}
	if k.Vmlinux != "" {
		if err := s.store.DeleteURL(ctx, k.Vmlinux); err != nil {
			return err
		}
	}
	if err := s.kernels.Delete(ctx, d.ID); err != nil {
		return err
	}
	s.log.Info("kernel forgotten: its image was deleted", "id", d.ID, "name", k.Name)
	return nil
}

// handleImageUpdated examines a KERNEL image that became READY in the
// catalog without add (slipway image create --type KERNEL …): add's own
// images carry AttrRegistry and are already recorded.
func (s *Service) handleImageUpdated(ctx context.Context, m *bus.Msg) error {
	var img schemas.Image
	if err := json.Unmarshal(m.Data, &img); err != nil {
		return bus.Terminal(fmt.Errorf("catalog image-updated: %w", err))
	}
	if img.Type != schemas.ImageTypeKernel || img.State != schemas.ImageStateReady || img.Attributes[AttrRegistry] != "" {
		return nil
	}
	switch k, err := s.getKernel(ctx, img.ID); {
	case err == nil && k.Name != img.Name: // renamed
		k.Name = img.Name
		return s.putKernel(ctx, k)
	case err == nil:
		return nil // examined already (an update of attributes, a redelivery)
	case !errors.Is(err, errNoKernel):
		return err
	}
	k, err := s.examine(ctx, img)
	if err != nil {
		ctx, err = overdue(ctx, err)
		if isRetryable(err) && m.Delivered < uint64(s.cfg.MaxDeliver) {
			return err
		}
		s.log.Warn("kernel-registry: cannot examine a KERNEL image", "id", img.ID, "err", err)
		s.publishFailed(ctx, m, strconv.FormatInt(img.ID, 10), fmt.Errorf("KERNEL image %d (%s): %w", img.ID, img.Name, err),
			schemas.Failure{ImageID: &img.ID, Source: img.Source})
		return bus.Terminal(err)
	}
	_, err = s.bus.Event(ctx, schemas.EventKernelRegistryExamined, strconv.FormatInt(k.ID, 10), k,
		bus.CausedBy(m.Envelope), bus.WithID(envelope.StepID(m.Envelope.ID, schemas.EventKernelRegistryExamined)))
	return err
}

// examine reads the image's blob, examines it, keeps a bzImage's vmlinux
// and records the kernel. A catalog kernel has no modules: no initrd.
func (s *Service) examine(ctx context.Context, img schemas.Image) (schemas.Kernel, error) {
	if img.Source == "" {
		return schemas.Kernel{}, errors.New("the image has no blob")
	}
	dir, err := os.MkdirTemp(s.w.Dir(), fmt.Sprintf("examine-%d-*", img.ID))
	if err != nil {
		return schemas.Kernel{}, &retryable{err}
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "kernel")
	if err := download(ctx, s.store, img.Source, file, nil); err != nil {
		return schemas.Kernel{}, err
	}
	f, err := inspectFile(file)
	if err != nil {
		return schemas.Kernel{}, err
	}
	sum, err := fileSHA256(file)
	if err != nil {
		return schemas.Kernel{}, err
	}
	var vmlinuxURL string
	if f.Format == kernel.FormatBzImage {
		vmlinux := filepath.Join(dir, "vmlinux")
		vf, err := extractVmlinux(file, f.Size, vmlinux)
		if err != nil {
			return schemas.Kernel{}, err
		}
		mergeVmlinux(&f, vf)
		if err := s.store.EnsureBucket(ctx, s.cfg.FilesBucket); err != nil {
			return schemas.Kernel{}, storeErr("files bucket", err)
		}
		if vmlinuxURL, err = putFile(ctx, s.store, s.cfg.FilesBucket, fmt.Sprintf("kernels/%d/vmlinux", img.ID), vmlinux); err != nil {
			return schemas.Kernel{}, err
		}
	}
	k := kernelRecord(f, img.Name, sum)
	k.ID, k.Source, k.Vmlinux = img.ID, schemas.KernelSourceCatalog, vmlinuxURL
	k.CreatedAt = time.Now().UTC().Format(time.RFC3339)
	return k, s.putKernel(ctx, k)
}
