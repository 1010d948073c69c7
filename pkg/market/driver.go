package market

import (
	"context"
	"fmt"
	"strconv"

	"github.com/slipway/slipway/schemas"
)

// Driver is what a marketplace service supplies per MAD. Its methods get
// copies: what they change stays theirs, but for Validate's.
type Driver interface {
	// Validate checks a marketplace's configuration on market-create and
	// after a market-update, and may fill in defaults (a public
	// endpoint). An error refuses the command with its message; the core
	// has already checked the name, the MAD and what the schemas say.
	Validate(mk *Market) error
	// List lists the marketplace's apps upstream. Each app needs a Name
	// unique in the marketplace and a Source; the core sets ID, MarketID,
	// Regtime, Misses and, when empty, Type (IMAGE) and State (READY),
	// and applies the refresh rules. A listing that fails returns an
	// error: the apps stay, the error is recorded on the marketplace.
	// ctx ends when the service stops.
	List(ctx context.Context, mk Market) ([]App, error)
	// ImageCreate is the catalog's image-create an import of app sends:
	// the driver sets Path (the app's source, through the validator of its
	// scheme), Type and whatever the source needs (checksums, size,
	// filesystem, format). The core sets Name, Datastore, OnBehalfOf and
	// the MARKETPLACE attributes, and Description when empty. req has the
	// marketplace's IMAGE_SIZE_MB, FILESYSTEM and FORMAT filled in where
	// the import did not say (see Effective).
	ImageCreate(mk Market, app App, req AppImport) (schemas.ImageCreate, error)
}

// Templater is a Driver whose apps bring their VM template (OpenNebula's
// public appliances). disks are the images the template's disks name, in
// order: the app's own, or those of its Parts; the others get the core's
// VMTemplate.
type Templater interface {
	VMTemplate(mk Market, app App, name string, disks []Disk) (string, error)
}

// Composer is a Driver some of whose apps are made of other apps of the
// same marketplace (OpenNebula's VMTEMPLATE appliances, whose template
// names the IMAGE apps of its disks). An import of such an app imports
// each part as image <name>-<i> (i from 0, with the part's ImageCreate),
// then sends one VM template naming all of them (Templater).
type Composer interface {
	// Parts are the names of the apps app is made of, in disk order;
	// none for an app imported by itself.
	Parts(app App) ([]string, error)
}

// Assembler is a Driver some of whose apps are services (OpenNebula's
// SERVICE_TEMPLATE appliances): roles, each instantiating a VM template
// app of the same marketplace. Slipway has no service object: an import of
// a service imports each role's app as that app's own import would (its
// images and its VM template), named <name>-<role>, and reports them all.
type Assembler interface {
	// Roles are the service's roles in order; none for any other app.
	Roles(app App) ([]Role, error)
}

// Role is one role of a service: its name and the app it instantiates.
type Role struct {
	Name string
	App  string
}

// Monitor is a Driver of marketplaces with a capacity (OpenNebula's private
// http and s3 ones): after each good listing the core records its usage on
// the marketplace (used_mb, free_mb, total_mb). A failed monitor is
// recorded as the listing's error; the apps listed stay.
type Monitor interface {
	Monitor(ctx context.Context, mk Market) (Usage, error)
}

// Usage is a marketplace's monitoring in MiB, as OpenNebula's monitor
// action reports USED_MB, FREE_MB and TOTAL_MB.
type Usage struct {
	UsedMB, FreeMB, TotalMB int64
}

// Drivers are a service's drivers by MAD. A MAD the service owns without a
// driver in this build lists with ErrNoDriver recorded on the marketplace.
type Drivers map[schemas.MarketMAD]Driver

// NoDriverError is the listing (or import) error of a marketplace whose
// MAD has no driver in this build.
type NoDriverError struct{ MAD schemas.MarketMAD }

func (e *NoDriverError) Error() string {
	return fmt.Sprintf("no driver for MAD %s in this build", e.MAD)
}

// Disk is the image a VM template's disk names: by ID once the catalog
// created it, else (ID < 0, app-show before any import) by name and
// owner, which the launcher resolves when the VM is instantiated.
type Disk struct {
	ID   int64
	Name string
	User string
}

// Vector is the template's DISK vector naming d: IMAGE_ID, else IMAGE and
// IMAGE_UNAME.
func (d Disk) Vector() map[string]string {
	if d.ID >= 0 {
		return map[string]string{"IMAGE_ID": strconv.FormatInt(d.ID, 10)}
	}
	return map[string]string{"IMAGE": d.Name, "IMAGE_UNAME": d.User}
}

// Effective is req with the marketplace's defaults where the import says
// nothing: IMAGE_SIZE_MB, FILESYSTEM and FORMAT.
func Effective(mk Market, req AppImport) AppImport {
	if req.SizeMiB == 0 {
		req.SizeMiB = mk.ImageSizeMb
	}
	if req.Filesystem == "" {
		req.Filesystem = mk.Filesystem
	}
	if req.Format == "" {
		req.Format = mk.Format
	}
	return req
}
