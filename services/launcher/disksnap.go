package launcher

import (
	"context"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// A VM disk's snapshots: disk-snapshot takes one (disks.go), these revert
// to one or delete one. The disk record keeps the tree (snapshot_tree,
// the same rules as the catalog's, pkg/snapshots); at EPILOG the tree goes
// to the catalog with the saved disk and becomes the image's.
//
// Revert needs the VM powered off, as OpenNebula requires: QEMU cannot
// load an internal snapshot of one disk under a running guest (loadvm
// reverts the whole machine), and a guest whose disk changed under it
// corrupts its filesystems. Delete works either way: QMP while QEMU runs,
// qemu-img when it does not.

// snapshotDisk finds the disk of a snapshot command and refuses one that
// cannot hold internal snapshots.
func (s *Service) snapshotDisk(ctx context.Context, id, diskID int64) (*vmRecord, planDisk, snapshots.Tree, error) {
	rec, pd, err := s.vmDisk(ctx, id, diskID)
	if err != nil {
		return nil, pd, nil, err
	}
	switch {
	case !pd.Persistent:
		return nil, pd, nil, refuse(&id, "DISK %d of VM %d is not persistent: it has no snapshots (only a persistent qcow2 disk has)", diskID, id)
	case pd.Format != "qcow2":
		return nil, pd, nil, refuse(&id, "DISK %d of VM %d is %s: internal snapshots need a qcow2 image", diskID, id, pd.Format)
	}
	return rec, pd, snapshots.Tree(pd.Public.SnapshotTree), nil
}

// diskSnapshotRevertCmd makes a powered-off VM's disk take a snapshot's state.
func (s *Service) diskSnapshotRevertCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.LauncherDiskSnapshotRevert
	if err := decode(msg, &req); err != nil {
		return err
	}
	m := s.machine(req.ID)
	m.op.Lock()
	defer m.op.Unlock()
	rec, pd, tree, err := s.snapshotDisk(ctx, req.ID, req.DiskID)
	if err != nil {
		return err
	}
	if sn, _ := tree.Find(req.Snapshot); sn.Active && msg.Delivered > 1 {
		return s.emitSnapshotChanged(ctx, msg, req.ID, req.DiskID, schemas.SnapshotOpRevert, req.Snapshot, tree)
	}
	after, err := tree.Revert(req.Snapshot)
	sn, _ := tree.Find(req.Snapshot)
	if err != nil {
		return refuse(&req.ID, "DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	if rec.State != stPoweroff || m.qemu() != nil {
		return refuse(&req.ID, "VM %d is %s: reverting DISK %d to snapshot %d needs the VM powered off (slipway vm poweroff %d), as in OpenNebula: the running guest would see its disk change under it",
			req.ID, rec.State, req.DiskID, req.Snapshot, req.ID)
	}
	if err := s.confinedDisk(pd, req.ID); err != nil {
		return refuse(&req.ID, "revert DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	if err := s.img.SnapshotApply(ctx, pd.Path, sn.Name); err != nil {
		return refuse(&req.ID, "revert DISK %d of VM %d to snapshot %d (%s): %v", req.DiskID, req.ID, req.Snapshot, sn.Name, err)
	}
	if err := s.recordTree(ctx, req.ID, req.DiskID, after, tree.Next(pd.Public.NextSnapshot)); err != nil {
		return err
	}
	return s.emitSnapshotChanged(ctx, msg, req.ID, req.DiskID, schemas.SnapshotOpRevert, req.Snapshot, after)
}

// diskSnapshotDeleteCmd deletes a snapshot that is not active and has no
// children.
func (s *Service) diskSnapshotDeleteCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.LauncherDiskSnapshotDelete
	if err := decode(msg, &req); err != nil {
		return err
	}
	m := s.machine(req.ID)
	m.op.Lock()
	defer m.op.Unlock()
	_, pd, tree, err := s.snapshotDisk(ctx, req.ID, req.DiskID)
	if err != nil {
		return err
	}
	sn, ok := tree.Find(req.Snapshot)
	if !ok && msg.Delivered > 1 {
		return s.emitSnapshotChanged(ctx, msg, req.ID, req.DiskID, schemas.SnapshotOpDelete, req.Snapshot, tree)
	}
	after, err := tree.Delete(req.Snapshot)
	if err != nil {
		return refuse(&req.ID, "DISK %d of VM %d: %v", req.DiskID, req.ID, err)
	}
	if vm := m.qemu(); vm != nil {
		err = vm.DeleteSnapshotInternal(ctx, pd.QEMUID, sn.Name)
	} else if err = s.confinedDisk(pd, req.ID); err == nil {
		err = s.img.SnapshotDelete(ctx, pd.Path, sn.Name)
	}
	if err != nil {
		return refuse(&req.ID, "delete snapshot %d (%s) of DISK %d of VM %d: %v", req.Snapshot, sn.Name, req.DiskID, req.ID, err)
	}
	if err := s.recordTree(ctx, req.ID, req.DiskID, after, tree.Next(pd.Public.NextSnapshot)); err != nil {
		return err
	}
	return s.emitSnapshotChanged(ctx, msg, req.ID, req.DiskID, schemas.SnapshotOpDelete, req.Snapshot, after)
}

// confinedDisk refuses a disk path outside the VM's directory and cache
// before qemu-img opens it.
func (s *Service) confinedDisk(pd planDisk, vmID int64) error {
	return qemu.CheckConfined(pd.Path, pd.Format, s.vmDir(vmID), s.cfg.CacheDir)
}

// recordTree stores a disk's snapshot tree (and its names) in the VM
// record, with next, the ID its next snapshot takes: the counter before
// the change (tree.Next of the old tree), so a deleted snapshot's ID is
// not given again.
func (s *Service) recordTree(ctx context.Context, vmID, diskID int64, tree snapshots.Tree, next int64) error {
	_, _, err := s.vms.Update(ctx, vmID, func(r *vmRecord) error {
		for i := range r.Run.Plan.Disks {
			if d := &r.Run.Plan.Disks[i]; d.DiskID == diskID {
				d.Public.SnapshotTree, d.Public.Snapshots, d.Public.NextSnapshot = tree, tree.Names(), next
			}
		}
		r.Run.Plan.describe(r)
		return nil
	})
	return err
}

func (s *Service) emitSnapshotChanged(ctx context.Context, msg *bus.Msg, vmID, diskID int64, op schemas.SnapshotOp, snap int64, tree snapshots.Tree) error {
	ev := schemas.LauncherDiskSnapshotChanged{ID: vmID, DiskID: diskID, Op: op, Snapshot: snap, Snapshots: tree}
	_, err := s.bus.Event(ctx, schemas.EventLauncherDiskSnapshotChanged, idKey(vmID), ev,
		causedBy(msg.Envelope, schemas.EventLauncherDiskSnapshotChanged)...)
	return err
}
