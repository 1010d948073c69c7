package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/snapshots"
	"github.com/slipway/slipway/schemas"
)

// epilog lets go of everything a VM holds: with save, each persistent disk
// is uploaded and committed over its image with image-release; every other
// image is released as it is; then the VM directory (overlays, copies,
// passphrase files, context ISO, QMP socket) is removed. It can run again
// after a crash: what was released is no longer in the record.
func (s *Service) epilog(ctx context.Context, rec *vmRecord, save bool) (string, error) {
	rec, _, err := s.vms.Get(ctx, rec.ID) // the locks as they are now
	if err != nil {
		return "", err
	}
	persistent := map[int64]planDisk{}
	if rec.Run.Plan != nil {
		for _, pd := range rec.Run.Plan.Disks {
			if pd.Persistent {
				persistent[pd.ImageID] = pd
			}
		}
	}
	var notes []string
	var errs []error
	for _, imageID := range rec.Run.Locks {
		pd, ok := persistent[imageID]
		if save && ok {
			note, err := s.saveDisk(ctx, rec.ID, pd)
			if err == nil {
				notes = append(notes, note)
				continue
			}
			// Keep nothing locked: release without the changes, and say so.
			errs = append(errs, fmt.Errorf("DISK %d: the changes could not be written back to image %d, they are lost: %w", pd.DiskID, imageID, err))
		}
		if _, err := s.release(ctx, rec.ID, imageID, nil); err != nil {
			errs = append(errs, err)
		}
	}
	if ctx.Err() != nil {
		// Interrupted (the service stops): the files stay for the
		// reconciler, which finishes the epilog.
		return "", errors.Join(append(errs, ctx.Err())...)
	}
	for _, d := range []string{s.vmDir(rec.ID), s.runDir(rec.ID)} {
		if err := os.RemoveAll(d); err != nil {
			errs = append(errs, fmt.Errorf("remove the VM's files: %w", err))
		}
	}
	if n := len(rec.Run.Locks); n > 0 {
		notes = append(notes, fmt.Sprintf("%d image(s) released", n))
	}
	return strings.Join(notes, "; "), errors.Join(errs...)
}

// saveDisk uploads a persistent disk's private copy to the upload bucket
// and has the catalog copy it over the image's blob.
func (s *Service) saveDisk(ctx context.Context, vmID int64, pd planDisk) (string, error) {
	vsize := pd.Public.Size
	if pd.Format != "luks" { // a LUKS header cannot be read without its passphrase; its size does not change
		var err error
		if vsize, err = s.virtualSize(ctx, pd.Path, pd.Format); err != nil {
			return "", err
		}
	}
	key := blob.SavedDiskKey(vmID, pd.DiskID, string(pd.Public.Format))
	info, err := s.upload(ctx, pd.Path, key)
	if err != nil {
		return "", err
	}
	tree, err := s.savedTree(ctx, pd)
	if err != nil {
		return "", err
	}
	save := &schemas.ImageSave{Source: info.URL(), Format: pd.Public.Format, Size: info.Size,
		VirtualSize: vsize, SHA256: info.SHA256, S3Checksum: info.S3Checksum, Snapshots: tree,
		NextSnapshot: snapshots.Tree(pd.Public.SnapshotTree).Next(pd.Public.NextSnapshot)}
	saved, err := s.release(ctx, vmID, pd.ImageID, save)
	if err != nil || !saved {
		// The catalog deletes what it took; what it did not take is ours.
		if derr := s.blobs.DeleteURL(ctx, info.URL()); derr != nil {
			s.log.Warn("removing a staged disk failed", "url", info.URL(), "err", derr)
		}
	}
	if err != nil {
		return "", err
	}
	if !saved {
		return fmt.Sprintf("DISK %d: image %d was not held by the VM any more; its changes were not kept", pd.DiskID, pd.ImageID), nil
	}
	return fmt.Sprintf("DISK %d saved to image %d", pd.DiskID, pd.ImageID), nil
}

// savedTree is the snapshot tree of a persistent disk as the disk holds it:
// the record's tree without a snapshot qemu-img does not list in the file
// (the record is what the catalog will trust; the file is the truth).
func (s *Service) savedTree(ctx context.Context, pd planDisk) (snapshots.Tree, error) {
	tree := snapshots.Tree(pd.Public.SnapshotTree)
	if len(tree) == 0 || pd.Format != "qcow2" {
		return nil, nil
	}
	list, err := s.img.Snapshots(ctx, pd.Path)
	if err != nil {
		return nil, fmt.Errorf("list the snapshots of DISK %d: %w", pd.DiskID, err)
	}
	held := map[string]bool{}
	for _, sn := range list {
		held[sn.Name] = true
	}
	kept := tree.Only(func(name string) bool { return held[name] })
	if len(kept) != len(tree) {
		s.log.Warn("the disk lacks snapshots its record names; they are dropped", "disk", pd.DiskID, "record", tree.Names(), "kept", kept.Names())
	}
	return kept, nil
}

// upload stores a local file at key in the upload bucket.
func (s *Service) upload(ctx context.Context, path, key string) (blob.Info, error) {
	if err := s.blobs.EnsureBucket(ctx, s.cfg.UploadBucket); err != nil {
		return blob.Info{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return blob.Info{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return blob.Info{}, err
	}
	return s.blobs.Put(ctx, s.cfg.UploadBucket, key, f, fi.Size())
}

// virtualSize asks qemu-img for a disk's virtual size.
func (s *Service) virtualSize(ctx context.Context, path, format string) (int64, error) {
	if err := qemuimg.CheckPath(path); err != nil {
		return 0, err
	}
	out, err := s.img.Run(ctx, s.img.Light(), "info", "-U", "--output=json", "-f", format, path)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var info struct {
		VirtualSize json.Number `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return strconv.ParseInt(info.VirtualSize.String(), 10, 64)
}
