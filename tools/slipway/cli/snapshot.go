package cli

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// Snapshots of persistent images (catalog) and of VM disks (launcher), as
// OpenNebula's oneimage snapshot-* and onevm disk-snapshot-*. The lists
// read the records (image show, vm show); the changes are commands.

// defaultSnapshotTimeout bounds an image snapshot operation: the converter
// downloads the blob, runs qemu-img and uploads the result.
const defaultSnapshotTimeout = 30 * time.Minute

// snapshotID resolves SNAP, a snapshot ID or name, in tree.
func snapshotID[T any](tree []T, ref string, idName func(T) (int64, string)) (int64, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil && id >= 0 {
		return id, nil
	}
	for _, s := range tree {
		if id, name := idName(s); name == ref {
			return id, nil
		}
	}
	return 0, fmt.Errorf("no snapshot named %q (snapshot-list lists them)", ref)
}

func renderIDName(s render.Snapshot) (int64, string) { return s.ID, s.Name }

func schemaIDName(s schemas.ImageSnapshot) (int64, string) { return s.ID, s.Name }

// toRender converts the schemas' snapshots for the table.
func toRender(tree []schemas.ImageSnapshot) []render.Snapshot {
	out := make([]render.Snapshot, len(tree))
	for i, s := range tree {
		out[i] = render.Snapshot{ID: s.ID, Name: s.Name, Parent: s.Parent, Active: s.Active, Date: s.Date, Size: s.Size}
	}
	return out
}

// newImageSnapshotCmds are image snapshot-list, -revert, -delete, -flatten.
func newImageSnapshotCmds(c *client) []*cobra.Command {
	list := &cobra.Command{
		Use:   "snapshot-list ID|NAME",
		Short: "List the snapshots of a persistent image (ID NAME PARENT ACTIVE DATE SIZE)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findImage, args[0], func(_ *bus.Bus, img render.Image) error {
				if len(img.Snapshots) == 0 {
					_, err := fmt.Fprintf(c.io.out, "image %d has no snapshots\n", img.ID)
					return err
				}
				return render.SnapshotTable(c.io.out, img.Snapshots, nil)
			})
		},
	}
	return []*cobra.Command{list,
		imageSnapshotCmd(c, "snapshot-revert", "Make the image's disk the state of snapshot SNAP, which becomes the active one", schemas.CommandCatalogImageSnapshotRevert),
		imageSnapshotCmd(c, "snapshot-delete", "Delete snapshot SNAP (not the active one, nor one with children)", schemas.CommandCatalogImageSnapshotDelete),
		imageSnapshotCmd(c, "snapshot-flatten", "Keep the state of snapshot SNAP as the image's disk and remove every snapshot", schemas.CommandCatalogImageSnapshotFlatten),
	}
}

func imageSnapshotCmd(c *client, use, short, verb string) *cobra.Command {
	timeout := defaultSnapshotTimeout
	cmd := &cobra.Command{
		Use:   use + " ID|NAME SNAP",
		Short: short + " (SNAP: ID or name; the image must be READY)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findImage, args[0], func(b *bus.Bus, img render.Image) error {
				snap, err := snapshotID(img.Snapshots, args[1], renderIDName)
				if err != nil {
					return fmt.Errorf("image %d: %w", img.ID, err)
				}
				ev, err := decoded[schemas.ImageSnapshotChanged](call(cmd.Context(), b, schemas.ServiceCatalog, verb,
					schemas.ImageSnapshotRevert{ID: int64(img.ID), Snapshot: snap}, []string{schemas.EventCatalogImageSnapshotChanged}, timeout))
				if err != nil {
					return fmt.Errorf("image %d: %s %d: %w", img.ID, use, snap, err)
				}
				fmt.Fprintf(c.io.out, "image %d: %s of snapshot %d done; %s, sha256 %s\n", ev.ID, ev.Op, ev.Snapshot, ev.State, ev.SHA256)
				if len(ev.Snapshots) == 0 {
					_, err := fmt.Fprintln(c.io.out, "no snapshots left")
					return err
				}
				return render.SnapshotTable(c.io.out, toRender(ev.Snapshots), nil)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultSnapshotTimeout, "how long to wait for the converter")
	return cmd
}

// newVMDiskSnapshotCmds are vm disk-snapshot-list, -revert, -delete.
func newVMDiskSnapshotCmds(c *client) []*cobra.Command {
	list := &cobra.Command{
		Use:   "disk-snapshot-list ID|NAME DISK",
		Short: "List the snapshots of a VM disk (ID NAME PARENT ACTIVE DATE SIZE)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withVMDisk(cmd.Context(), c, args[0], args[1], func(_ *bus.Bus, vm schemas.VM, d schemas.VMDisk) error {
				if len(d.SnapshotTree) == 0 {
					_, err := fmt.Fprintf(c.io.out, "VM %d DISK %d has no snapshots\n", vm.ID, d.DiskID)
					return err
				}
				return render.SnapshotTable(c.io.out, toRender(d.SnapshotTree), nil)
			})
		},
	}
	return []*cobra.Command{list,
		vmDiskSnapshotCmd(c, "disk-snapshot-revert", "Make the disk the state of snapshot SNAP (the VM must be POWEROFF)", schemas.CommandLauncherDiskSnapshotRevert),
		vmDiskSnapshotCmd(c, "disk-snapshot-delete", "Delete snapshot SNAP of the disk (not the active one, nor one with children)", schemas.CommandLauncherDiskSnapshotDelete),
	}
}

func vmDiskSnapshotCmd(c *client, use, short, verb string) *cobra.Command {
	return &cobra.Command{
		Use:   use + " ID|NAME DISK SNAP",
		Short: short + " (SNAP: ID or name)",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withVMDisk(cmd.Context(), c, args[0], args[1], func(b *bus.Bus, vm schemas.VM, d schemas.VMDisk) error {
				snap, err := snapshotID(d.SnapshotTree, args[2], schemaIDName)
				if err != nil {
					return fmt.Errorf("VM %d DISK %d: %w", vm.ID, d.DiskID, err)
				}
				var req any = schemas.LauncherDiskSnapshotRevert{ID: vm.ID, DiskID: d.DiskID, Snapshot: snap}
				if verb == schemas.CommandLauncherDiskSnapshotDelete {
					req = schemas.LauncherDiskSnapshotDelete{ID: vm.ID, DiskID: d.DiskID, Snapshot: snap}
				}
				ev, err := launcherAnswer[schemas.LauncherDiskSnapshotChanged](cmd.Context(), b,
					fmt.Sprintf("vm %s %s %d %d", use, args[0], d.DiskID, snap), verb, req, schemas.EventLauncherDiskSnapshotChanged)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "VM %d DISK %d: %s of snapshot %d done\n", ev.ID, ev.DiskID, ev.Op, ev.Snapshot)
				return render.SnapshotTable(c.io.out, toRender(ev.Snapshots), nil)
			})
		},
	}
}

// withVMDisk finds VM ref and its disk DISK.
func withVMDisk(ctx context.Context, c *client, ref, disk string, fn func(*bus.Bus, schemas.VM, schemas.VMDisk) error) error {
	n, err := diskIndex(disk)
	if err != nil {
		return err
	}
	return withFound(ctx, c, findVM, ref, func(b *bus.Bus, vm schemas.VM) error {
		for _, d := range vm.Disks {
			if d.DiskID == n {
				return fn(b, vm, d)
			}
		}
		return fmt.Errorf("VM %d has no DISK %d (it has %d)", vm.ID, n, len(vm.Disks))
	})
}
