package cli

// slipway datastore create|list|show|delete: the catalog's datastores, as
// OpenNebula's onedatastore shows them. Capacity is what the catalog
// records: the images' sizes against the datastore's LIMIT_MB.

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

func newDatastoreCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{Use: "datastore", Short: "Datastores: create, list, show, delete, chmod, chown, chgrp (all but list and show for the oneadmin group)", RunE: unknownSubcommand}
	cmd.AddCommand(newDatastoreCreateCmd(c),
		newListCmd(c, "list [--json]", "List the datastores with their capacity (ID NAME SIZE AVA CLUSTERS IMAGES TYPE DS TM STAT)",
			func(ctx context.Context, b *bus.Bus) ([]schemas.CatalogDatastore, error) {
				return ask(ctx, b, schemas.QryCatalogDatastores, schemas.CatalogDatastoresRequest{}, "list datastores")
			}, datastoreTable),
		newShowCmd(c, "show ID|NAME [--json]", "Show a datastore, its capacity and its images", findDatastore, showDatastore),
		newCatalogCmd[schemas.DatastoreDelete, schemas.DatastoreDeleted](c, "delete ID|NAME",
			"Delete a datastore without images; default and files cannot be deleted (for the oneadmin group)", cobra.ExactArgs(1),
			schemas.CmdCatalogDatastoreDelete, fromArgs(func(a []string) schemas.DatastoreDelete { return schemas.DatastoreDelete{Datastore: a[0]} })))
	cmd.AddCommand(newDatastorePermissionCmds(c)...)
	return cmd
}

// newDatastorePermissionCmds are datastore chmod, chown and chgrp (for
// the oneadmin group): use of a datastore lets a user create images in it.
func newDatastorePermissionCmds(c *client) []*cobra.Command {
	ref := func(id int64) string { return strconv.FormatInt(id, 10) }
	return permissionCmds[schemas.DatastoreChmod, schemas.DatastoreChown, schemas.DatastoreChown, schemas.DatastoreUpdated](c, "a datastore's",
		func(ctx context.Context, b *bus.Bus, r string) (int64, error) {
			ds, err := findDatastore(ctx, b, r)
			return ds.ID, err
		},
		schemas.CmdCatalogDatastoreChmod, func(id int64, p string) schemas.DatastoreChmod {
			return schemas.DatastoreChmod{Datastore: ref(id), Permissions: p}
		},
		schemas.CmdCatalogDatastoreChown, func(id int64, u, g string) schemas.DatastoreChown {
			return schemas.DatastoreChown{Datastore: ref(id), User: u, Group: g}
		},
		schemas.CmdCatalogDatastoreChown, func(id int64, g string) schemas.DatastoreChown {
			return schemas.DatastoreChown{Datastore: ref(id), Group: g}
		})
}

func newDatastoreCreateCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "create FILE",
		Short: "Create a datastore from an OpenNebula datastore template (- reads stdin); prints ID: N",
		Long: `Create a datastore from a template in OpenNebula's syntax:

  NAME     = "fast"
  TYPE     = IMAGE_DS          # or FILE_DS (kernels, ramdisks, context files)
  DS_MAD   = s3
  BUCKET   = "slipway-ds-fast" # must start with slipway-ds-; created if missing
  LIMIT_MB = 10240             # capacity (QUOTA is the same); absent: unlimited

A datastore on another S3 server names the remote the services have configured
(SLIPWAY_S3_REMOTES, slipway up --s3-remotes) whose buckets hold BUCKET:

  CREDENTIALS = "archive"      # the remote's name: a reference, never a key
  ENDPOINT    = "https://archive.example:9000"  # optional: must be the remote's

Without CREDENTIALS (or with "default") the datastore is on the catalog's own
S3. The bucket is checked (created if missing) on its server: a remote that is
down refuses the creation. datastore delete removes the bucket if the catalog
made it and it is empty, and keeps it otherwise. For the oneadmin group.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readTemplateText(args[0], c.io.in)
			if err != nil {
				return err
			}
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				ev, err := invoke[schemas.DatastoreCreate, schemas.DatastoreCreated](cmd.Context(), b, schemas.CmdCatalogDatastoreCreate,
					schemas.DatastoreCreate{Template: text})
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.io.out, "ID: %d\n", ev.Datastore.ID)
				return err
			})
		},
	}
}

// findDatastore resolves a datastore ID or name.
func findDatastore(ctx context.Context, b *bus.Bus, ref string) (schemas.CatalogDatastore, error) {
	return ask(ctx, b, schemas.QryCatalogDatastoreShow, schemas.CatalogDatastoreShowRequest{Datastore: ref}, "datastore "+ref)
}

// dsCapacity is a datastore's SIZE and AVA as onedatastore list prints
// them: the limit and the share of it free; "-" when unlimited.
func dsCapacity(d schemas.CatalogDatastore) (size, ava string) {
	if d.LimitMb <= 0 {
		return "-", "-"
	}
	return render.HumanSize(d.LimitMb << 20), strconv.FormatInt(max(d.FreeMb, 0)*100/d.LimitMb, 10) + "%"
}

// dsType is OpenNebula's short datastore type.
func dsType(k schemas.DatastoreKind) string {
	if k == schemas.DatastoreKindFile {
		return "fil"
	}
	return "img"
}

func datastoreTable(w io.Writer, all []schemas.CatalogDatastore) error {
	cols := []render.Column{{Title: "ID", Right: true}, {Title: "NAME"}, {Title: "SIZE", Right: true}, {Title: "AVA", Right: true},
		{Title: "CLUSTERS"}, {Title: "IMAGES", Right: true}, {Title: "TYPE"}, {Title: "DS"}, {Title: "TM"}, {Title: "STAT"}}
	rows := make([][]string, len(all))
	for i, d := range all {
		size, ava := dsCapacity(d)
		rows[i] = []string{strconv.FormatInt(d.ID, 10), d.Name, size, ava, "0", strconv.Itoa(len(d.Images)),
			dsType(d.Kind), string(d.DsMad), string(d.TmMad), "on"}
	}
	return render.Table(w, cols, rows)
}

func showDatastore(w io.Writer, d schemas.CatalogDatastore) error {
	total, free := "-", "-"
	if d.LimitMb > 0 {
		total, free = render.HumanSize(d.LimitMb<<20), render.HumanSize(max(d.FreeMb, 0)<<20)
	}
	types := make([]string, len(d.Types))
	for i, t := range d.Types {
		types[i] = string(t)
	}
	lines := [][2]string{{"ID", strconv.FormatInt(d.ID, 10)}, {"NAME", d.Name}, {"USER", cmp.Or(d.User, "oneadmin")}, {"GROUP", cmp.Or(d.Group, "oneadmin")},
		{"CLUSTERS", "0"}, {"TYPE", map[bool]string{true: "FILE", false: "IMAGE"}[d.Kind == schemas.DatastoreKindFile]},
		{"DS_MAD", string(d.DsMad)}, {"TM_MAD", string(d.TmMad)}, {"BUCKET", d.Bucket},
		{"ENDPOINT", cmp.Or(d.Endpoint, "(the catalog's S3)")}, {"CREDENTIALS", cmp.Or(d.Credentials, "default")},
		{"STATE", "READY"}, {"BUILT IN", render.YesNo(d.Builtin)}}
	if err := writeInformation(w, "DATASTORE", d.ID, lines); err != nil {
		return err
	}
	if err := writeSection(w, "PERMISSIONS", render.PermissionLines(d.Permissions)); err != nil {
		return err
	}
	if err := writeSection(w, "DATASTORE CAPACITY", [][2]string{{"TOTAL", total}, {"FREE", free},
		{"USED", render.HumanSize(d.UsedMb << 20)}, {"LIMIT", limitMBText(d.LimitMb)}}); err != nil {
		return err
	}
	ids := make([]string, len(d.Images))
	for i, id := range d.Images {
		ids[i] = strconv.FormatInt(id, 10)
	}
	_, err := fmt.Fprintf(w, "\nIMAGE TYPES\n%s\n\nIMAGES\n%s\n", strings.Join(types, ", "), strings.Join(ids, "\n"))
	return err
}

func limitMBText(n int64) string {
	if n <= 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10) + " MB"
}
