package marketlxc

import (
	"context"
	"time"

	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/market-lxc/published"
)

// What the http and s3 drivers (OpenNebula's private marketplaces) share:
// apps are package published's entries, imports are disk imports checked
// against the published sha256, and the VM template is the one published
// with the app, its disk naming the imported image.

// lister reads a private marketplace's index (httpmarket.Lister,
// s3market.Lister).
type lister interface {
	List(ctx context.Context) ([]published.Entry, error)
}

// listApps lists a private marketplace's apps through l.
func listApps(ctx context.Context, l lister) ([]market.App, error) {
	entries, err := l.List(ctx)
	if err != nil {
		return nil, err
	}
	return publishedApps(entries), nil
}

// publishedApps are a private marketplace's entries as the core's apps.
// source derives each blob's location from the app's (checked) name and
// format, never from the document.
func publishedApps(entries []published.Entry) []market.App {
	apps := make([]market.App, 0, len(entries))
	for _, e := range entries {
		apps = append(apps, market.App{
			Name: e.Name, Version: e.Version, Publisher: e.Publisher, Description: e.Description,
			Size: e.Size, Format: e.Format, Source: e.BlobURL, Checksums: []string{"sha256:" + e.SHA256},
			Kind: schemas.MarketAppKindDisk, VMTemplate: e.VMTemplate, LastUpdated: e.Created.UTC().Format(time.RFC3339),
		})
	}
	return apps
}

// diskImport is the image-create of an app of a private marketplace whose
// blob is at path (derived again by the driver): a disk image, imported
// as it is (the declared format must be the detected one), its sha256
// enforced by the converter.
func diskImport(app market.App, path string, req market.AppImport) (schemas.ImageCreate, error) {
	if err := published.ValidateFormat(app.Format); err != nil {
		return schemas.ImageCreate{}, err
	}
	return schemas.ImageCreate{
		Path: path, Type: schemas.ImageTypeOS, SourceFormat: schemas.DiskFormat(app.Format),
		Format: req.Format, Checksums: app.Checksums, Description: app.Description,
	}, nil
}

// blobPath is the blob's path below the marketplace's base, derived from
// the app's name and format through package published's validators.
func blobPath(app market.App) (string, error) {
	if err := published.ValidateName(app.Name); err != nil {
		return "", err
	}
	if err := published.ValidateFormat(app.Format); err != nil {
		return "", err
	}
	return published.BlobPath(app.Name, app.Format), nil
}

// privateTemplate is the VM template of an import of app as name: the one
// published with it, named name, with its disks replaced by one naming
// the imported image; the core's when none was published.
func privateTemplate(s *Service, app market.App, name string, disk market.Disk) (string, error) {
	if app.VMTemplate == "" {
		return market.VMTemplate(name, s.cfg.User, s.cfg.Kernel, disk, app), nil
	}
	t, err := onetemplate.ParseString(app.VMTemplate)
	if err != nil {
		return "", err
	}
	t.Set("NAME", name)
	t.Del("DISK")
	t.AddVector("DISK", disk.Vector())
	return t.String(), nil
}

// monitorUsage is a package published usage as the core's.
func monitorUsage(u published.Usage) market.Usage {
	return market.Usage{UsedMB: u.UsedMB, FreeMB: u.FreeMB, TotalMB: u.TotalMB}
}
