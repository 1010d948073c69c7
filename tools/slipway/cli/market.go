package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The market commands talk to the market-dockerhub service like
// OpenNebula's onemarket and onemarketapp.

const marketService = schemas.ServiceMarketDockerhub

// marketTimeLayout is onemarketapp list's REGTIME (month/day/year).
const marketTimeLayout = "01/02/06"

func newMarketCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "market",
		Short: "Manage marketplaces and their apps (like OpenNebula's onemarket)",
		RunE:  unknownSubcommand,
	}
	app := &cobra.Command{
		Use:   "app",
		Short: "List, show and import marketplace apps (like onemarketapp)",
		RunE:  unknownSubcommand,
	}
	app.AddCommand(newMarketAppListCmd(c), newMarketAppShowCmd(c), newMarketAppImportCmd(c))
	cmd.AddCommand(newMarketListCmd(c), newMarketShowCmd(c), newMarketCreateCmd(c), newMarketUpdateCmd(c),
		newMarketDeleteCmd(c), newMarketRefreshCmd(c), newMarketChmodCmd(c), app)
	return cmd
}

// marketColumns are onemarket list's columns.
var marketColumns = []render.Column{
	{Title: "ID", Right: true}, {Title: "NAME"}, {Title: "SIZE", Right: true}, {Title: "AVAIL", Right: true},
	{Title: "APPS", Right: true}, {Title: "MAD"}, {Title: "ZONE", Right: true},
}

// marketRow is one marketplace under marketColumns: a public marketplace
// has no capacity, shown "0M" and "-" as onemarket shows it.
func marketRow(m schemas.Market) []string {
	avail := "-"
	if m.TotalMb > 0 {
		avail = render.HumanSize(m.FreeMb << 20)
	}
	return []string{strconv.FormatInt(m.ID, 10), m.Name, render.HumanSize(m.TotalMb << 20), avail,
		strconv.FormatInt(m.Apps, 10), string(m.Mad), strconv.FormatInt(m.Zone, 10)}
}

// appColumns are onemarketapp list's columns.
var appColumns = []render.Column{
	{Title: "ID", Right: true}, {Title: "NAME"}, {Title: "VERSION"}, {Title: "SIZE", Right: true}, {Title: "STAT"},
	{Title: "TYPE"}, {Title: "REGTIME"}, {Title: "MARKET"}, {Title: "ZONE", Right: true},
}

// appRow is one app under appColumns; marketName names its marketplace.
func appRow(a schemas.MarketApp, marketName string, zone int64, loc *time.Location) []string {
	size := "-"
	if a.Size > 0 {
		size = render.HumanSize(a.Size)
	}
	reg := a.Regtime
	if t, err := time.Parse(time.RFC3339Nano, a.Regtime); err == nil {
		reg = t.In(loc).Format(marketTimeLayout)
	}
	return []string{strconv.FormatInt(a.ID, 10), a.Name, dockerurl.PickTag(a.Tags), size, "rdy", "img", reg,
		marketName, strconv.FormatInt(zone, 10)}
}

func listMarkets(ctx context.Context, b *bus.Bus) ([]schemas.Market, error) {
	var out []schemas.Market
	if err := b.Query(ctx, marketService, schemas.QueryMarketDockerhubList, schemas.MarketDockerhubListRequest{}, &out); err != nil {
		return nil, fmt.Errorf("list marketplaces: %w", err)
	}
	return out, nil
}

// findMarket resolves a marketplace ID or name.
func findMarket(ctx context.Context, b *bus.Bus, ref string) (schemas.Market, error) {
	id, name := idOrName(ref)
	return ask(ctx, b, schemas.QryMarketDockerhubShow, schemas.MarketDockerhubShowRequest{ID: id, Name: name}, "marketplace "+ref)
}

func newMarketListCmd(c *client) *cobra.Command {
	return newListCmd(c, "list", "List marketplaces (ID NAME SIZE AVAIL APPS MAD ZONE)", listMarkets,
		func(w io.Writer, markets []schemas.Market) error {
			rows := make([][]string, len(markets))
			for i, m := range markets {
				rows[i] = marketRow(m)
			}
			return render.Table(w, marketColumns, rows)
		})
}

func newMarketShowCmd(c *client) *cobra.Command {
	return newShowCmd(c, "show ID|NAME", "Show one marketplace", findMarket, showMarket)
}

func showMarket(w io.Writer, m schemas.Market) error {
	where := m.Registry
	if m.Mad == schemas.MarketMADDockerhub {
		where = m.Endpoint
	}
	refreshed := m.RefreshedAt
	if refreshed == "" {
		refreshed = "never"
	}
	lines := [][2]string{{"ID", strconv.FormatInt(m.ID, 10)}, {"NAME", m.Name}, {"USER", cmp.Or(m.User, acl.AdminUser)},
		{"GROUP", cmp.Or(m.Group, acl.AdminGroup)}, {"MARKET MAD", string(m.Mad)},
		{"SOURCE", where}, {"INSECURE", render.YesNo(m.Insecure)}, {"MONITORING", render.YesNo(m.Monitoring)},
		{"APPS", strconv.FormatInt(m.Apps, 10)}, {"ZONE", strconv.FormatInt(m.Zone, 10)}, {"LAST REFRESH", refreshed}}
	if m.Error != "" {
		lines = append(lines, [2]string{"ERROR", m.Error})
	}
	if err := writeInformation(w, "MARKETPLACE", m.ID, lines); err != nil {
		return err
	}
	return writeSection(w, "PERMISSIONS", render.PermissionLines(cmp.Or(m.Permissions, "744")))
}

// newMarketChmodCmd changes a marketplace's bits (for the oneadmin group).
func newMarketChmodCmd(c *client) *cobra.Command {
	return chmodCmd[schemas.MarketDockerhubMarketChmod, schemas.Market](c,
		"Change who may see a marketplace and import from it, e.g. 740 (for the oneadmin group)",
		func(ctx context.Context, b *bus.Bus, ref string) (int64, error) {
			m, err := findMarket(ctx, b, ref)
			return m.ID, err
		},
		schemas.CmdMarketDockerhubMarketChmod, func(id int64, p string) schemas.MarketDockerhubMarketChmod {
			return schemas.MarketDockerhubMarketChmod{ID: id, Permissions: p}
		})
}

// marketAnswer sends a command to the market service and waits for the
// first of its events named in want (or failed, an error); what names the
// command in its error.
func marketAnswer(ctx context.Context, b *bus.Bus, what, verb string, data any, timeout time.Duration, want ...string) (event, error) {
	w, env, err := sendWatched(ctx, b, ">", marketService, verb, data)
	if err != nil {
		return event{}, fmt.Errorf("%s: %w", what, err)
	}
	defer w.close()
	ev, err := awaitMarket(ctx, w, env, timeout, want...)
	if err != nil {
		return ev, fmt.Errorf("%s: %w", what, err)
	}
	return ev, nil
}

// awaitMarket waits for an event of the market service, in env's saga,
// named in want; a failed event is an error.
func awaitMarket(ctx context.Context, w *watcher, env envelope.Envelope, timeout time.Duration, want ...string) (event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ev, err := awaitAnswer(ctx, w, answer{service: marketService, failed: schemas.EventMarketDockerhubFailed, corr: env.CorrelationID,
		done: func(ev event) bool { return slices.Contains(want, ev.Name) }}, nil, 0)
	if err != nil && errors.Is(err, ctx.Err()) {
		return ev, fmt.Errorf("no answer from the %s service in %s (is it running?)", marketService, timeout)
	}
	return ev, err
}

func newMarketCreateCmd(c *client) *cobra.Command {
	var (
		req        schemas.MarketDockerhubMarketCreate
		monitoring bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME --registry HOST[:PORT]",
		Short: "Add a marketplace listing an OCI registry's repositories",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			req.Monitoring = &monitoring
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				want := []string{schemas.EventMarketDockerhubMarketCreated}
				if monitoring {
					want = []string{schemas.EventMarketDockerhubAppsRefreshed}
				}
				ev, err := marketAnswer(cmd.Context(), b, "market create "+req.Name, schemas.CommandMarketDockerhubMarketCreate, req, timeout, want...)
				if err != nil {
					return err
				}
				if ev.Name == schemas.EventMarketDockerhubAppsRefreshed {
					return printRefreshed(c.io.out, req.Name, ev)
				}
				fmt.Fprintf(c.io.out, "marketplace %s %q created (monitoring off: run `slipway market refresh %s`)\n", ev.ID, req.Name, req.Name)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "marketplace name")
	f.StringVar(&req.Registry, "registry", "", "registry host[:port]")
	f.BoolVar(&req.Insecure, "insecure", false, "talk plain HTTP to the registry")
	f.BoolVar(&monitoring, "monitoring", true, "list the registry again on a schedule")
	f.DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the first listing")
	_ = cmd.MarkFlagRequired("name")
	_ = cmd.MarkFlagRequired("registry")
	return cmd
}

func printRefreshed(w io.Writer, name string, ev event) error {
	var r schemas.MarketDockerhubAppsRefreshed
	if err := ev.decode(&r); err != nil {
		return err
	}
	if r.Error != "" {
		return fmt.Errorf("marketplace %d %q: listing failed: %s", r.MarketID, name, r.Error)
	}
	_, err := fmt.Fprintf(w, "marketplace %d %q: %d apps (%d new, %d gone)\n", r.MarketID, name, r.Apps, r.Added, r.Removed)
	return err
}

func newMarketUpdateCmd(c *client) *cobra.Command {
	var (
		monitoring, insecure     bool
		name, registry, endpoint string
		timeout                  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "update ID|NAME [--monitoring=false] [--insecure] [--name N] [--registry R] [--endpoint URL]",
		Short: "Change a marketplace (e.c. switch its monitoring off)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findMarket, args[0], func(b *bus.Bus, m schemas.Market) error {
				req := schemas.MarketDockerhubMarketUpdate{ID: m.ID}
				fl := cmd.Flags()
				if fl.Changed("monitoring") {
					req.Monitoring = &monitoring
				}
				if fl.Changed("insecure") {
					req.Insecure = &insecure
				}
				if fl.Changed("name") {
					req.Name = &name
				}
				if fl.Changed("registry") {
					req.Registry = &registry
				}
				if fl.Changed("endpoint") {
					req.Endpoint = &endpoint
				}
				ev, err := marketAnswer(cmd.Context(), b, "market update "+args[0], schemas.CommandMarketDockerhubMarketUpdate, req, timeout,
					schemas.EventMarketDockerhubMarketUpdated)
				if err != nil {
					return err
				}
				var after schemas.Market
				if err := ev.decode(&after); err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "marketplace %d %q updated: monitoring %s\n", after.ID, after.Name, render.YesNo(after.Monitoring))
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.BoolVar(&monitoring, "monitoring", true, "list the marketplace again on a schedule")
	f.BoolVar(&insecure, "insecure", false, "talk plain HTTP to the registry")
	f.StringVar(&name, "name", "", "new name")
	f.StringVar(&registry, "registry", "", "new registry host[:port]")
	f.StringVar(&endpoint, "endpoint", "", "new Docker Hub API base URL")
	f.DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the answer")
	return cmd
}

func newMarketDeleteCmd(c *client) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "delete ID|NAME",
		Short: "Delete a marketplace and its apps (imported images stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findMarket, args[0], func(b *bus.Bus, m schemas.Market) error {
				if _, err := marketAnswer(cmd.Context(), b, "market delete "+args[0], schemas.CommandMarketDockerhubMarketDelete,
					schemas.MarketDockerhubMarketDelete{ID: m.ID}, timeout, schemas.EventMarketDockerhubMarketDeleted); err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "marketplace %d %q deleted\n", m.ID, m.Name)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the answer")
	return cmd
}

func newMarketRefreshCmd(c *client) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "refresh ID|NAME",
		Short: "List a marketplace's apps again now",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findMarket, args[0], func(b *bus.Bus, m schemas.Market) error {
				ev, err := marketAnswer(cmd.Context(), b, "market refresh "+args[0], schemas.CommandMarketDockerhubRefresh,
					schemas.MarketDockerhubRefresh{MarketID: m.ID}, timeout, schemas.EventMarketDockerhubAppsRefreshed)
				if err != nil {
					return err
				}
				return printRefreshed(c.io.out, m.Name, ev)
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the listing")
	return cmd
}

func newMarketAppListCmd(c *client) *cobra.Command {
	var (
		asJSON bool
		filter string
	)
	cmd := &cobra.Command{
		Use:   "list [MARKET]",
		Short: "List apps (ID NAME VERSION SIZE STAT TYPE REGTIME MARKET ZONE)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.withBus(ctx, func(b *bus.Bus) error {
				markets, err := listMarkets(ctx, b)
				if err != nil {
					return err
				}
				req := schemas.MarketDockerhubAppsRequest{Filter: filter}
				if len(args) == 1 {
					m, err := findMarket(ctx, b, args[0])
					if err != nil {
						return err
					}
					req.MarketID = &m.ID
				}
				var apps []schemas.MarketApp
				if err := b.Query(ctx, marketService, schemas.QueryMarketDockerhubApps, req, &apps); err != nil {
					return fmt.Errorf("list apps: %w", err)
				}
				if asJSON {
					return render.JSONList(c.io.out, apps)
				}
				return writeApps(c.io.out, apps, markets, time.Local)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON array")
	cmd.Flags().StringVar(&filter, "filter", "", "only apps whose name or description contains this")
	return cmd
}

func writeApps(w io.Writer, apps []schemas.MarketApp, markets []schemas.Market, loc *time.Location) error {
	byID := map[int64]schemas.Market{}
	for _, m := range markets {
		byID[m.ID] = m
	}
	rows := make([][]string, len(apps))
	for i, a := range apps {
		m := byID[a.MarketID]
		name := m.Name
		if name == "" {
			name = strconv.FormatInt(a.MarketID, 10)
		}
		rows[i] = appRow(a, name, m.Zone, loc)
	}
	return render.Table(w, appColumns, rows)
}

// findApp resolves an app ID or name, within one marketplace when given.
func findApp(ctx context.Context, b *bus.Bus, ref, marketRef string) (schemas.MarketApp, error) {
	id, name := idOrName(ref)
	req := schemas.MarketDockerhubAppShowRequest{ID: id, Name: name}
	if marketRef != "" {
		m, err := findMarket(ctx, b, marketRef)
		if err != nil {
			return schemas.MarketApp{}, err
		}
		req.MarketID = &m.ID
	}
	return ask(ctx, b, schemas.QryMarketDockerhubAppShow, req, "app "+ref)
}

// appIn is findApp within the marketplace marketRef ("": any).
func appIn(marketRef string) func(context.Context, *bus.Bus, string) (schemas.MarketApp, error) {
	return func(ctx context.Context, b *bus.Bus, ref string) (schemas.MarketApp, error) {
		return findApp(ctx, b, ref, marketRef)
	}
}

func newMarketAppShowCmd(c *client) *cobra.Command {
	var (
		asJSON    bool
		marketRef string
	)
	cmd := &cobra.Command{
		Use:   "show ID|NAME [--market MARKET]",
		Short: "Show an app: its tags, description and VM template",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, appIn(marketRef), args[0], func(b *bus.Bus, a schemas.MarketApp) error {
				if asJSON {
					return render.JSON(c.io.out, a)
				}
				m, err := findMarket(ctx, b, strconv.FormatInt(a.MarketID, 10))
				if err != nil {
					return err
				}
				return showApp(c.io.out, a, m)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	cmd.Flags().StringVar(&marketRef, "market", "", "marketplace ID or name, when several have the app")
	return cmd
}

func showApp(w io.Writer, a schemas.MarketApp, m schemas.Market) error {
	size := "-"
	if a.Size > 0 {
		size = render.HumanSize(a.Size)
	}
	lines := [][2]string{{"ID", strconv.FormatInt(a.ID, 10)}, {"NAME", a.Name},
		{"MARKETPLACE", fmt.Sprintf("%s (%d)", m.Name, m.ID)}, {"SOURCE", a.Source}, {"VERSION", dockerurl.PickTag(a.Tags)},
		{"TAGS", strings.Join(a.Tags, ", ")}, {"SIZE", size}, {"REGISTER TIME", a.Regtime}}
	if a.Stars > 0 || a.Pulls > 0 {
		lines = append(lines, [2]string{"STARS", strconv.FormatInt(a.Stars, 10)}, [2]string{"PULLS", strconv.FormatInt(a.Pulls, 10)})
	}
	if a.LastUpdated != "" {
		lines = append(lines, [2]string{"LAST UPDATED", a.LastUpdated})
	}
	if err := writeInformation(w, "MARKETPLACE APP", a.ID, lines); err != nil {
		return err
	}
	if a.Description != "" {
		if _, err := fmt.Fprintf(w, "\nDESCRIPTION\n%s\n", a.Description); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintf(w, "\nVM TEMPLATE\n%s", a.Template)
	return err
}

func newMarketAppImportCmd(c *client) *cobra.Command {
	var (
		req                schemas.MarketDockerhubAppImport
		marketRef          string
		filesystem, format string
		timeout            time.Duration
		wait               bool
	)
	cmd := &cobra.Command{
		Use:   "import ID|NAME --name IMAGE [--market M --tag T --size MiB --filesystem ext4 --format qcow2 --datastore default] [--wait]",
		Short: "Import an app as an image, with a VM template for it",
		Long: `Import an app: the catalog creates the image from the app's docker:// URL, and the
launcher gets a VM template whose disk is that image (DISK = [ IMAGE_ID = N ]).
Prints the image ID once the catalog has registered it; with --wait it then follows
the import until the image is READY or ERROR.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, appIn(marketRef), args[0], func(b *bus.Bus, a schemas.MarketApp) error {
				req.MarketID, req.App = a.MarketID, a.Name
				req.Filesystem, req.Format = schemas.Filesystem(filesystem), schemas.DiskFormat(format)
				return c.importApp(ctx, b, req, timeout, wait)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "name of the image (and VM template) to create")
	f.StringVar(&marketRef, "market", "", "marketplace ID or name, when several have the app")
	f.StringVar(&req.Tag, "tag", "", "tag to import (default: latest, or the app's first tag)")
	f.Int64Var(&req.SizeMiB, "size", 0, "disk size in MiB (default: sized by the builder)")
	f.StringVar(&filesystem, "filesystem", "ext4", "ext2, ext3, ext4 or xfs")
	f.StringVar(&format, "format", "qcow2", "raw or qcow2")
	f.StringVar(&req.Datastore, "datastore", "default", "datastore of the image")
	f.DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the image's registration (with --wait, for its import too)")
	f.BoolVar(&wait, "wait", false, "follow the import until READY or ERROR")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// importApp sends app-import and reports the image the catalog registered
// and the template sent to the launcher; with wait it then follows the
// image's import.
func (c *client) importApp(ctx context.Context, b *bus.Bus, req schemas.MarketDockerhubAppImport, timeout time.Duration, wait bool) error {
	w, env, err := sendWatched(ctx, b, ">", marketService, schemas.CommandMarketDockerhubAppImport, req)
	if err != nil {
		return err
	}
	defer w.close()
	ev, err := awaitMarket(ctx, w, env, timeout, schemas.EventMarketDockerhubAppImported)
	if err != nil {
		return fmt.Errorf("import %s: %w", req.App, err)
	}
	var done schemas.MarketDockerhubAppImported
	if err := ev.decode(&done); err != nil {
		return err
	}
	fmt.Fprintf(c.io.out, "image %d %q: importing %s from %s\nVM template %q (DISK = [ IMAGE_ID = %d ]) sent to the launcher; `slipway market app show %s` prints it\n",
		done.ImageID, done.Name, done.App, done.URL, done.Name, done.ImageID, done.App)
	if !wait {
		return nil
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	img, err := showImage(ctx, b, done.ImageID)
	if err != nil {
		return fmt.Errorf("import %s: %w", req.App, err)
	}
	return c.follow(ctx, b, w, img)
}
