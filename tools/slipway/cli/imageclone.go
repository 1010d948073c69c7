package cli

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// image clone, lock, unlock and orphans (OpenNebula's oneimage clone,
// lock, unlock and orphans).

func newImageCloneCmd(c *client) *cobra.Command {
	var (
		datastore string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "clone ID|NAME NEW_NAME [--datastore DS]",
		Short: "Clone an image (server-side copy); prints the new ID and waits until it is READY",
		Long: `Clone an image into a new one of yours, as oneimage clone does: OS, DATABLOCK
and CDROM images without snapshots, READY, USED or CLONE (the source shows CLONE
while the copy runs). The catalog copies the blob inside the object store and
checks the copy's SHA-256 against the source's. --datastore must use the
source's driver. Prints "ID: N" once the catalog has registered the clone, then
follows it and exits non-zero if it ends in ERROR.`,
		Example: `  slipway image clone debian debian-test
  slipway image clone 4 web-2 --datastore default`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, resolve, args[0], func(b *bus.Bus, id int64) error {
				req := schemas.ImageClone{ID: id, Name: args[1], Datastore: datastore}
				return c.newImage(ctx, b, "clone", schemas.CommandCatalogImageClone, req, timeout)
			})
		},
	}
	cmd.Flags().StringVarP(&datastore, "datastore", "d", "", "datastore of the clone (default: the source's)")
	cmd.Flags().DurationVar(&timeout, "timeout", 0, "give up waiting after this long (0: no limit)")
	return cmd
}

func newImageLockCmd(c *client) *cobra.Command {
	var use, manage, admin, all bool
	cmd := newActionCmd(c, "lock ID|NAME [--use|--manage|--admin|--all]",
		"Lock an image: refuse the operations at and above a level (default --use)", 1,
		func([]string) (action, error) {
			level := schemas.LockLevelUse
			switch {
			case manage:
				level = schemas.LockLevelManage
			case admin:
				level = schemas.LockLevelAdmin
			case all:
				level = schemas.LockLevelAll
			}
			return action{
				verb:    schemas.CommandCatalogImageLock,
				payload: func(id int64) any { return schemas.ImageLockRequest{ID: id, Level: level} },
				reached: func(img render.Image) bool { return img.Lock != nil && img.Lock.Level == string(level) },
			}, nil
		})
	cmd.Long = `Lock an image, as oneimage lock does. --use (the default) refuses every
operation that needs use, manage or admin on it (a VM taking it, a clone, a
rename, a delete, a chown…); --manage those that need manage or admin; --admin
those that need admin; --all every operation. The refusal says who locked it
and when. image unlock lifts it; both need manage on the image.`
	fl := cmd.Flags()
	fl.BoolVar(&use, "use", false, "lock use, manage and admin operations (the default)")
	fl.BoolVar(&manage, "manage", false, "lock manage and admin operations")
	fl.BoolVar(&admin, "admin", false, "lock admin operations")
	fl.BoolVar(&all, "all", false, "lock every operation")
	cmd.MarkFlagsMutuallyExclusive("use", "manage", "admin", "all")
	return cmd
}

func newImageUnlockCmd(c *client) *cobra.Command {
	return newActionCmd(c, "unlock ID|NAME", "Unlock an image (a lock never refuses this; needs manage)", 1,
		func([]string) (action, error) {
			return action{
				verb:    schemas.CommandCatalogImageUnlock,
				payload: func(id int64) any { return schemas.ImageRef{ID: id} },
				reached: func(img render.Image) bool { return img.Lock == nil },
			}, nil
		})
}

// newImageOrphansCmd lists the images no VM template references. The CLI
// joins the catalog's images and the launcher's templates, as OpenNebula's
// CLI does: the catalog does not depend on the launcher (the launcher
// depends on the catalog), and each list is what the asker may see.
func newImageOrphansCmd(c *client) *cobra.Command {
	cmd := newListCmd(c, "orphans", "List images no VM template references (ID USER GROUP NAME DATASTORE SIZE TYPE PER STAT RVMS)",
		func(ctx context.Context, b *bus.Bus) ([]render.Image, error) {
			images, err := listImagesFiltered(ctx, b, schemas.ListFilterAll)
			if err != nil {
				return nil, err
			}
			templates, err := ask(ctx, b, schemas.QryLauncherTemplates, schemas.LauncherTemplatesRequest{}, "list templates")
			if err != nil {
				return nil, err
			}
			out, err := orphans(images, templates)
			slices.SortFunc(out, func(a, b render.Image) int { return a.ID - b.ID })
			return out, err
		}, render.List)
	cmd.Long = `List the images that no VM template references, as oneimage orphans does: a
template references an image by IMAGE_ID, or by IMAGE with IMAGE_UNAME (its
owner), or by IMAGE alone (an image of the template's owner), in its DISK
vectors (as OpenNebula: a kernel named only by OS/KERNEL_DS is listed). Only
the images and templates you may see are compared: for the oneadmin group, all
of them.`
	return cmd
}

// imageRef is one way a template names an image.
type imageRef struct {
	id          *int64
	name, owner string
}

// orphans are the images none of the templates references. A template
// whose text does not parse is reported (its references are unknown, so
// nothing is listed rather than something wrong).
func orphans(images []render.Image, templates []schemas.VMTemplate) ([]render.Image, error) {
	var refs []imageRef
	for _, t := range templates {
		r, err := templateRefs(t)
		if err != nil {
			return nil, fmt.Errorf("template %d (%s): %w: its image references are unknown", t.ID, t.Name, err)
		}
		refs = append(refs, r...)
	}
	var out []render.Image
	for _, img := range images {
		if !slices.ContainsFunc(refs, func(r imageRef) bool { return r.names(img) }) {
			out = append(out, img)
		}
	}
	return out, nil
}

func (r imageRef) names(img render.Image) bool {
	if r.id != nil {
		return *r.id == int64(img.ID)
	}
	return r.name == img.Name && r.owner == img.User
}

// templateRefs lists the images a template's DISK vectors name, as
// OpenNebula counts them: IMAGE_ID, or IMAGE with IMAGE_UNAME, or IMAGE
// alone for an image of the template's owner.
func templateRefs(t schemas.VMTemplate) ([]imageRef, error) {
	tmpl, err := onetemplate.ParseString(t.Template)
	if err != nil {
		return nil, err
	}
	var out []imageRef
	for _, d := range tmpl.Vectors("DISK") {
		if v := d["IMAGE_ID"]; v != "" {
			id, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("DISK IMAGE_ID %q is not a number", v)
			}
			out = append(out, imageRef{id: &id})
			continue
		}
		owner := d["IMAGE_UNAME"]
		if owner == "" {
			owner = t.User
		}
		out = append(out, imageRef{name: d["IMAGE"], owner: owner})
	}
	return out, nil
}
