package qemu

import (
	"context"
	"fmt"
	"strings"
)

// Status returns the run state (query-status).
func (v *VM) Status(ctx context.Context) (Status, error) {
	var r struct {
		Status string `json:"status"`
	}
	if err := v.Command(ctx, "query-status", nil, &r); err != nil {
		return "", err
	}
	return Status(r.Status), nil
}

// Powerdown asks the guest to power off (ACPI power button, system_powerdown). The guest
// must handle the button (the ACPI button driver and something listening to it).
func (v *VM) Powerdown(ctx context.Context) error {
	return v.Command(ctx, "system_powerdown", nil, nil)
}

// Stop pauses the guest's CPUs.
func (v *VM) Stop(ctx context.Context) error { return v.Command(ctx, "stop", nil, nil) }

// Cont resumes a paused guest (also one started with -S).
func (v *VM) Cont(ctx context.Context) error { return v.Command(ctx, "cont", nil, nil) }

// SnapshotInternal takes an internal snapshot named name of the qcow2 disk whose ID
// (node name) is device (blockdev-snapshot-internal-sync). QEMU refuses formats without
// internal snapshots (raw, luks) and read-only disks.
func (v *VM) SnapshotInternal(ctx context.Context, device, name string) error {
	if name == "" {
		return fmt.Errorf("snapshot of %s: empty name", device)
	}
	args := map[string]string{"device": device, "name": name}
	if err := v.Command(ctx, "blockdev-snapshot-internal-sync", args, nil); err != nil {
		return fmt.Errorf("snapshot %q of %s: %w", name, device, err)
	}
	return nil
}

// DeleteSnapshotInternal deletes the internal snapshot named name of the
// qcow2 disk whose node name is device
// (blockdev-snapshot-delete-internal-sync).
func (v *VM) DeleteSnapshotInternal(ctx context.Context, device, name string) error {
	if name == "" {
		return fmt.Errorf("delete a snapshot of %s: empty name", device)
	}
	args := map[string]string{"device": device, "name": name}
	if err := v.Command(ctx, "blockdev-snapshot-delete-internal-sync", args, nil); err != nil {
		return fmt.Errorf("delete snapshot %q of %s: %w", name, device, err)
	}
	return nil
}

// rawBlock is the part of query-block's reply QueryBlock reads.
type rawBlock struct {
	Device    string `json:"device"`
	Qdev      string `json:"qdev"`
	Removable bool   `json:"removable"`
	Inserted  *struct {
		File      string `json:"file"`
		NodeName  string `json:"node-name"`
		RO        bool   `json:"ro"`
		Drv       string `json:"drv"`
		Encrypted bool   `json:"encrypted"`
		Image     struct {
			BackingImage *struct {
				Filename string `json:"filename"`
				Format   string `json:"format"`
			} `json:"backing-image"`
		} `json:"image"`
	} `json:"inserted"`
}

// QueryBlock lists the VM's disks (query-block), those with media inserted.
func (v *VM) QueryBlock(ctx context.Context) ([]BlockInfo, error) {
	var raw []rawBlock
	if err := v.Command(ctx, "query-block", nil, &raw); err != nil {
		return nil, err
	}
	var out []BlockInfo
	for _, r := range raw {
		b := BlockInfo{Device: r.Device, QdevID: qdevID(r.Qdev), Removable: r.Removable}
		if in := r.Inserted; in != nil {
			b.NodeName, b.Driver, b.File = in.NodeName, in.Drv, in.File
			b.ReadOnly, b.Encrypted = in.RO, in.Encrypted
			if bi := in.Image.BackingImage; bi != nil {
				b.BackingDriver, b.BackingFile = bi.Format, bi.Filename
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// qdevID turns a QOM path (/machine/peripheral/disk0-dev/virtio-backend) into the
// device's id (disk0-dev).
func qdevID(q string) string {
	if rest, ok := strings.CutPrefix(q, "/machine/peripheral/"); ok {
		q, _, _ = strings.Cut(rest, "/")
	}
	return q
}
