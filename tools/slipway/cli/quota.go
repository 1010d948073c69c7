package cli

// slipway user quota and slipway group quota: OpenNebula's DATASTORE
// quota (IMAGES and SIZE per datastore), set by the oneadmin group and
// shown with the usage the catalog counts from the images.

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// newQuotaCmd is `slipway user quota` (kind "user") or `slipway group
// quota` (kind "group").
func newQuotaCmd(c *client, kind string) *cobra.Command {
	var (
		datastore string
		images    int64
		sizeMB    int64
	)
	cmd := &cobra.Command{
		Use:   "quota NAME",
		Short: "Set a " + kind + "'s datastore quota: --images and --size-mb (for the oneadmin group)",
		Long: `Set a ` + kind + `'s quota in --datastore (default "default"), as OpenNebula's
DATASTORE quota: --images limits the number of images, --size-mb their total
virtual size in MB. The limits not given stay. -2 is unlimited, -1 the default
quota (none is configured: unlimited), 0 allows nothing. The oneadmin user and
group have no quota.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var img, size *int64
			if cmd.Flags().Changed("images") {
				img = &images
			}
			if cmd.Flags().Changed("size-mb") {
				size = &sizeMB
			}
			if img == nil && size == nil {
				return fmt.Errorf("give --images, --size-mb or both")
			}
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				var qs []schemas.DatastoreQuota
				if kind == "user" {
					ev, err := invoke[schemas.UserQuota, schemas.UserUpdated](cmd.Context(), b, schemas.CmdCatalogUserQuota,
						schemas.UserQuota{Name: args[0], Datastore: datastore, Images: img, SizeMb: size})
					if err != nil {
						return err
					}
					qs = ev.User.Quotas
				} else {
					ev, err := invoke[schemas.GroupQuota, schemas.GroupUpdated](cmd.Context(), b, schemas.CmdCatalogGroupQuota,
						schemas.GroupQuota{Name: args[0], Datastore: datastore, Images: img, SizeMb: size})
					if err != nil {
						return err
					}
					qs = ev.Group.Quotas
				}
				fmt.Fprintf(c.io.out, "%s %s: %s\n", kind, args[0], quotaSummary(qs))
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&datastore, "datastore", "default", "the datastore the quota applies to")
	cmd.Flags().Int64Var(&images, "images", 0, "limit on the number of images (-2 unlimited, -1 default)")
	cmd.Flags().Int64Var(&sizeMB, "size-mb", 0, "limit on their total size in MB (-2 unlimited, -1 default)")
	return cmd
}

// limitText is a limit as a person reads it.
func limitText(n int64) string {
	switch n {
	case -2:
		return "unlimited"
	case -1:
		return "default"
	}
	return strconv.FormatInt(n, 10)
}

// usedOf is "used / limit", or the limit alone when no usage came with it.
func usedOf(used *int64, limit int64) string {
	if used == nil {
		return limitText(limit)
	}
	return strconv.FormatInt(*used, 10) + " / " + limitText(limit)
}

// quotaSummary is the quotas that limit something, on one line ("-" when
// none does).
func quotaSummary(qs []schemas.DatastoreQuota) string {
	var parts []string
	for _, q := range qs {
		if q.Images == -1 && q.SizeMb == -1 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s: images %s, MB %s", q.Datastore, usedOf(q.ImagesUsed, q.Images), usedOf(q.SizeMbUsed, q.SizeMb)))
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// printQuotas is the usage and quotas table of `user show`, one row per
// datastore, as oneuser show has it.
func printQuotas(w io.Writer, qs []schemas.DatastoreQuota) error {
	fmt.Fprintln(w, "\nDATASTORE USAGE & QUOTAS")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "DATASTORE\tIMAGES\tSIZE (MB)")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", q.Datastore, usedOf(q.ImagesUsed, q.Images), usedOf(q.SizeMbUsed, q.SizeMb))
	}
	return tw.Flush()
}
