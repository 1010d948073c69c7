package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// diskStates are the states in which a VM's disks exist.
var diskStates = []schemas.VMState{stBoot, stRunning, stPoweroff}

// vmDisk finds a disk of a VM whose disks exist; the caller holds m.op.
func (s *Service) vmDisk(ctx context.Context, id, diskID int64) (*vmRecord, planDisk, error) {
	rec, _, err := s.vms.Get(ctx, id)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, planDisk{}, missing(&id, "VM %d does not exist", id)
	}
	if err != nil {
		return nil, planDisk{}, err
	}
	if !slices.Contains(diskStates, rec.State) || rec.Run.Plan == nil {
		return nil, planDisk{}, refuse(&id, "VM %d is %s: its disks exist only in %s", id, rec.State, stateList(diskStates...))
	}
	for _, pd := range rec.Run.Plan.Disks {
		if pd.DiskID == diskID {
			return rec, pd, nil
		}
	}
	return nil, planDisk{}, refuse(&id, "VM %d has no DISK %d (it has %d)", id, diskID, len(rec.Run.Plan.Disks))
}

// diskSaveAsCmd copies a disk's current content into a new catalog image.
func (s *Service) diskSaveAsCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.LauncherDiskSaveAs
	if err := decode(msg, &req); err != nil {
		return err
	}
	if imageID, done, err := s.processedBefore(ctx, msg); err != nil {
		return err
	} else if done {
		return s.emitSaved(ctx, msg, req, imageID)
	}
	m := s.machine(req.ID)
	m.op.Lock()
	defer m.op.Unlock()
	_, pd, err := s.vmDisk(ctx, req.ID, req.DiskID)
	if err != nil {
		return err
	}
	if pd.Secret != "" {
		return refuse(&req.ID, "DISK %d of VM %d is LUKS-encrypted: save-as would write its content in clear; it is not supported", req.DiskID, req.ID)
	}
	// The image shows LOCKED_USED(_PERS) while its VM's disk is copied.
	if err := s.copyLock(ctx, req.ID, pd.ImageID, true); err != nil {
		return refuse(&req.ID, "save-as of DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	staged, err := s.stageCopy(ctx, m, req, pd, msg.StreamSeq)
	if uerr := s.copyLock(context.WithoutCancel(ctx), req.ID, pd.ImageID, false); uerr != nil {
		// The catalog's reconciler gives the image back if this fails.
		s.log.Warn("unlocking an image after save-as failed", "vm", req.ID, "image", pd.ImageID, "err", uerr)
	}
	if err != nil {
		return err
	}
	create := schemas.ImageCreate{Name: req.Name, Type: pd.Public.Type, Path: staged, Staged: true,
		SourceFormat: "qcow2", Description: fmt.Sprintf("DISK %d of VM %d, saved", req.DiskID, req.ID), OnBehalfOf: bus.UserOf(msg)}
	cctx, cancel := s.callCtx(ctx)
	defer cancel()
	ans, err := bus.Invoke(cctx, s.bus, schemas.CmdCatalogImageCreate, create)
	if err != nil {
		if derr := s.blobs.DeleteURL(context.WithoutCancel(ctx), staged); derr != nil {
			s.log.Warn("removing a staged save-as copy failed", "url", staged, "err", derr)
		}
		var ce *bus.CallError
		if errors.As(err, &ce) {
			return refuse(&req.ID, "the catalog refused the new image %q: %s", req.Name, ce.Message)
		}
		return err
	}
	var img schemas.Image
	if err := json.Unmarshal(ans.Data, &img); err != nil {
		return fmt.Errorf("decode the catalog's image-created: %w", err)
	}
	if err := s.markProcessed(ctx, msg, img.ID); err != nil {
		return err
	}
	return s.emitSaved(ctx, msg, req, img.ID)
}

func (s *Service) emitSaved(ctx context.Context, msg *bus.Msg, req schemas.LauncherDiskSaveAs, imageID int64) error {
	ev := schemas.LauncherDiskSaved{ID: req.ID, DiskID: req.DiskID, ImageID: imageID}
	_, err := s.bus.Event(ctx, schemas.EventLauncherDiskSaved, idKey(req.ID), ev, causedBy(msg.Envelope, schemas.EventLauncherDiskSaved)...)
	return err
}

// stageCopy converts the disk (its overlay chain, or its private copy) to
// one qcow2 file, pausing a running guest meanwhile so the copy is
// consistent, and uploads it for the catalog. It returns the staged URL.
func (s *Service) stageCopy(ctx context.Context, m *machine, req schemas.LauncherDiskSaveAs, pd planDisk, seq uint64) (string, error) {
	tmp := filepath.Join(s.vmDir(req.ID), fmt.Sprintf("saveas-%d.qcow2", req.DiskID))
	defer os.Remove(tmp)
	if err := s.convertPaused(ctx, m, pd, tmp); err != nil {
		return "", fmt.Errorf("VM %d DISK %d: %w", req.ID, req.DiskID, err)
	}
	key := fmt.Sprintf("vms/%d/saveas-%d-%d.qcow2", req.ID, req.DiskID, seq)
	info, err := s.upload(ctx, tmp, key)
	if err != nil {
		return "", err
	}
	return info.URL(), nil
}

// convertPaused runs qemu-img convert while the guest's CPUs are stopped.
// -U reads the disk although QEMU holds its lock; the pause makes that
// safe.
func (s *Service) convertPaused(ctx context.Context, m *machine, pd planDisk, dst string) error {
	format := pd.Format
	if pd.Overlay {
		format = "qcow2"
	}
	if vm := m.qemu(); vm != nil {
		if err := vm.Stop(ctx); err != nil {
			return fmt.Errorf("pause the guest: %w", err)
		}
		defer func() {
			if err := vm.Cont(context.WithoutCancel(ctx)); err != nil {
				s.log.Error("resuming the guest after save-as failed", "vm", m.id, "err", err)
			}
		}()
	}
	if err := qemu.CheckConfined(pd.Path, format, s.vmDir(m.id), s.cfg.CacheDir); err != nil {
		return err
	}
	for _, p := range []string{pd.Path, dst} {
		if err := qemuimg.CheckPath(p); err != nil {
			return err
		}
	}
	return s.qemuImg(ctx, "convert", "-U", "-f", format, "-O", "qcow2", pd.Path, dst)
}

// diskSnapshotCmd takes an internal snapshot of a persistent qcow2 disk.
func (s *Service) diskSnapshotCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.LauncherDiskSnapshot
	if err := decode(msg, &req); err != nil {
		return err
	}
	m := s.machine(req.ID)
	m.op.Lock()
	defer m.op.Unlock()
	_, pd, err := s.vmDisk(ctx, req.ID, req.DiskID)
	if err != nil {
		return err
	}
	switch {
	case !pd.Persistent:
		return refuse(&req.ID, "DISK %d of VM %d is not persistent: its changes are discarded when the VM ends, and a snapshot with them; use disk-save-as", req.DiskID, req.ID)
	case pd.Format != "qcow2":
		return refuse(&req.ID, "DISK %d of VM %d is %s: internal snapshots need a qcow2 image", req.DiskID, req.ID, pd.Format)
	case slices.Contains(pd.Public.Snapshots, req.Name):
		if msg.Delivered > 1 {
			return s.emitSnapshotted(ctx, msg, req)
		}
		return refuse(&req.ID, "DISK %d of VM %d already has a snapshot named %q", req.DiskID, req.ID, req.Name)
	}
	tree, taken, err := snapshots.Tree(pd.Public.SnapshotTree).Add(pd.Public.NextSnapshot, req.Name, time.Now(), pd.Public.Size)
	if err != nil {
		return refuse(&req.ID, "snapshot of DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	if vm := m.qemu(); vm != nil {
		err = vm.SnapshotInternal(ctx, pd.QEMUID, req.Name)
	} else {
		// qemu-img snapshot takes no -f; --image-opts names the format.
		if err := qemu.CheckConfined(pd.Path, pd.Format, s.vmDir(req.ID), s.cfg.CacheDir); err != nil {
			return refuse(&req.ID, "snapshot of DISK %d of VM %d: %v", req.DiskID, req.ID, err)
		}
		err = s.img.SnapshotCreate(ctx, pd.Path, req.Name)
	}
	if err != nil {
		return refuse(&req.ID, "snapshot of DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	if err := s.recordTree(ctx, req.ID, req.DiskID, tree, taken.ID+1); err != nil {
		return err
	}
	return s.emitSnapshotted(ctx, msg, req)
}

func (s *Service) emitSnapshotted(ctx context.Context, msg *bus.Msg, req schemas.LauncherDiskSnapshot) error {
	ev := schemas.LauncherDiskSnapshotted(req)
	_, err := s.bus.Event(ctx, schemas.EventLauncherDiskSnapshotted, idKey(req.ID), ev, causedBy(msg.Envelope, schemas.EventLauncherDiskSnapshotted)...)
	return err
}
