package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/dockerurl"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The market commands talk to the marketplace services (market-lxc,
// market-dockerhub: package market's shared contract) like OpenNebula's
// onemarket and onemarketapp. Lists merge every service's answer; a
// command about one marketplace goes to the service owning it: by MAD on
// create, else as the marketplace lookup (findMarket) found it.

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
	app.AddCommand(newMarketAppListCmd(c), newMarketAppShowCmd(c), newMarketAppImportCmd(c), newMarketAppCreateCmd(c),
		newMarketAppDeleteCmd(c))
	cmd.AddCommand(newMarketListCmd(c), newMarketShowCmd(c), newMarketCreateCmd(c), newMarketUpdateCmd(c),
		newMarketDeleteCmd(c), newMarketRefreshCmd(c), newMarketChmodCmd(c), newMarketServeCmd(c), app)
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
	return []string{strconv.FormatInt(a.ID, 10), a.Name, appVersion(a), size, appState(a), appType(a), reg,
		marketName, strconv.FormatInt(zone, 10)}
}

// appVersion is an app's VERSION: the listed one, else (an app listed
// before versions) its default tag.
func appVersion(a schemas.MarketApp) string { return cmp.Or(a.Version, dockerurl.PickTag(a.Tags)) }

// appState and appType are onemarketapp list's STAT and TYPE.
func appState(a schemas.MarketApp) string {
	if a.State == "" || a.State == schemas.MarketAppStateReady {
		return "rdy"
	}
	return strings.ToLower(string(a.State))
}

func appType(a schemas.MarketApp) string {
	switch a.Type {
	case schemas.MarketAppTypeVmtemplate:
		return "tpl"
	case schemas.MarketAppTypeServiceTemplate:
		return "srv"
	}
	return "img"
}

// askMarkets asks endpoint of every marketplace service and merges the
// answers. A service that is not running is left out when another
// answers, with a warning on warn; every other error is the command's.
func askMarkets[Req, Rep any](ctx context.Context, b *bus.Bus, warn io.Writer, endpoint string, req Req, what string) ([]Rep, error) {
	var out []Rep
	var down []error
	for _, svc := range market.Services() {
		rep, err := bus.Ask(ctx, b, schemas.Qry[Req, []Rep]{Service: svc, Endpoint: endpoint}, req)
		if bus.ErrorCode(err) == bus.CodeUnavailable {
			down = append(down, err)
			continue
		}
		if err != nil {
			return nil, queryError(err, what)
		}
		out = append(out, rep...)
	}
	if len(down) == len(market.Services()) {
		return nil, queryError(errors.Join(down...), what)
	}
	for _, err := range down {
		fmt.Fprintf(warn, "warning: %s: left out: %v\n", what, queryError(err, what))
	}
	return out, nil
}

// listMarkets lists the marketplaces of every service, by ID (warn: see
// askMarkets).
func listMarkets(ctx context.Context, b *bus.Bus, warn io.Writer) ([]schemas.Market, error) {
	out, err := askMarkets[schemas.MarketListRequest, schemas.Market](ctx, b, warn, market.QueryList, schemas.MarketListRequest{}, "list marketplaces")
	slices.SortFunc(out, func(a, b schemas.Market) int { return cmp.Compare(a.ID, b.ID) })
	return out, err
}

// findMarket resolves a marketplace ID or name in whichever service has
// it: the routing of every command about one marketplace
// (marketService).
func findMarket(ctx context.Context, b *bus.Bus, ref string) (schemas.Market, error) {
	id, name := idOrName(ref)
	var last error
	for _, svc := range market.Services() {
		q := schemas.Qry[schemas.MarketShowRequest, schemas.Market]{Service: svc, Endpoint: market.QueryShow}
		m, err := bus.Ask(ctx, b, q, schemas.MarketShowRequest{ID: id, Name: name})
		if err == nil {
			return m, nil
		}
		if !missed(&last, err) {
			return m, queryError(err, "marketplace "+ref)
		}
	}
	return schemas.Market{}, queryError(last, "marketplace "+ref)
}

// missed reports whether err is a service's "not found" or "not running",
// which asking the next service may mend; last keeps the error to report
// when none has it, a "not found" before a "not running".
func missed(last *error, err error) bool {
	code := bus.ErrorCode(err)
	if code != bus.CodeNotFound && code != bus.CodeUnavailable {
		return false
	}
	if *last == nil || code == bus.CodeNotFound {
		*last = err
	}
	return true
}

// marketService is the service that owns marketplace m.
func marketService(m schemas.Market) string { return market.Owner(m.Mad) }

func newMarketListCmd(c *client) *cobra.Command {
	list := func(ctx context.Context, b *bus.Bus) ([]schemas.Market, error) { return listMarkets(ctx, b, c.io.err) }
	return newListCmd(c, "list", "List marketplaces (ID NAME SIZE AVAIL APPS MAD ZONE)", list,
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
	where := cmp.Or(m.Endpoint, m.Registry)
	refreshed := m.RefreshedAt
	if refreshed == "" {
		refreshed = "never"
	}
	lines := [][2]string{{"ID", strconv.FormatInt(m.ID, 10)}, {"NAME", m.Name}, {"USER", cmp.Or(m.User, acl.AdminUser)},
		{"GROUP", cmp.Or(m.Group, acl.AdminGroup)}, {"MARKET MAD", string(m.Mad)},
		{"SOURCE", where}, {"INSECURE", render.YesNo(m.Insecure)}, {"MONITORING", render.YesNo(m.Monitoring)},
		{"APPS", strconv.FormatInt(m.Apps, 10)}, {"ZONE", strconv.FormatInt(m.Zone, 10)}, {"LAST REFRESH", refreshed}}
	lines = appendSet(lines, [][2]string{{"VARIANT", m.Variant}, {"FTYPE", string(m.Ftype)}, {"ARCH", strings.Join(m.Arches, " ")},
		{"IMAGE_SIZE_MB", sizeOrEmpty(m.ImageSizeMb)}, {"FILESYSTEM", string(m.Filesystem)}, {"FORMAT", string(m.Format)},
		{"PUBLIC_DIR", m.PublicDir}, {"BUCKET", m.Bucket}, {"TOTAL_MB", sizeOrEmpty(m.TotalMb)},
		{"USED_MB", monitoredOrEmpty(m, m.UsedMb)}, {"FREE_MB", monitoredOrEmpty(m, m.FreeMb)}})
	if m.Error != "" {
		lines = append(lines, [2]string{"ERROR", m.Error})
	}
	if err := writeInformation(w, "MARKETPLACE", m.ID, lines); err != nil {
		return err
	}
	return writeSection(w, "PERMISSIONS", render.PermissionLines(cmp.Or(m.Permissions, "744")))
}

// appendSet appends to lines the attributes of extra that have a value.
func appendSet(lines, extra [][2]string) [][2]string {
	for _, e := range extra {
		if e[1] != "" {
			lines = append(lines, e)
		}
	}
	return lines
}

// monitoredOrEmpty is n, a monitored number (used_mb, free_mb) of
// marketplace m: 0 is shown for a marketplace with a capacity, nothing
// for one without.
func monitoredOrEmpty(m schemas.Market, n int64) string {
	if m.TotalMb == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

func sizeOrEmpty(n int64) string {
	if n == 0 {
		return ""
	}
	return strconv.FormatInt(n, 10)
}

// newMarketChmodCmd changes a marketplace's bits (for the oneadmin group).
func newMarketChmodCmd(c *client) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "chmod ID|NAME OCTAL",
		Short: "Change who may see a marketplace and import from it, e.g. 740 (for the oneadmin group)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if _, err := acl.ParseOctal(args[1]); err != nil {
				return err
			}
			return withFound(cmd.Context(), c, findMarket, args[0], func(b *bus.Bus, m schemas.Market) error {
				ev, err := marketAnswer(cmd.Context(), b, marketService(m), "market chmod "+args[0], market.CommandMarketChmod,
					schemas.MarketChmod{ID: m.ID, Permissions: args[1]}, timeout, market.EventMarketUpdated)
				if err != nil {
					return err
				}
				var after schemas.Market
				if err := ev.decode(&after); err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "marketplace %d %q: permissions %s\n", after.ID, after.Name, after.Permissions)
				return nil
			})
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the answer")
	return cmd
}

// marketAnswer sends a command to the marketplace service svc and waits
// for the first of its events named in want (or failed, an error); what
// names the command in its error.
func marketAnswer(ctx context.Context, b *bus.Bus, svc, what, verb string, data any, timeout time.Duration, want ...string) (event, error) {
	w, env, err := sendWatched(ctx, b, ">", svc, verb, data)
	if err != nil {
		return event{}, fmt.Errorf("%s: %w", what, err)
	}
	defer w.close()
	ev, err := awaitMarket(ctx, w, svc, env, timeout, want...)
	if err != nil {
		return ev, fmt.Errorf("%s: %w", what, err)
	}
	return ev, nil
}

// awaitMarket waits for an event of the marketplace service svc, in env's
// saga, named in want; a failed event is an error.
func awaitMarket(ctx context.Context, w *watcher, svc string, env envelope.Envelope, timeout time.Duration, want ...string) (event, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ev, err := awaitAnswer(ctx, w, answer{service: svc, failed: market.EventFailed, corr: env.CorrelationID,
		done: func(ev event) bool { return slices.Contains(want, ev.Name) }}, nil, 0)
	if err != nil && errors.Is(err, ctx.Err()) {
		return ev, fmt.Errorf("no answer from the %s service in %s (is it running?)", svc, timeout)
	}
	return ev, err
}

func newMarketCreateCmd(c *client) *cobra.Command {
	var (
		flags      schemas.MarketCreate
		monitoring bool
		timeout    time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [FILE] [--name NAME --registry HOST[:PORT]]",
		Short: "Add a marketplace: from an OpenNebula market template FILE (NAME, MARKET_MAD, ENDPOINT, IMAGE_SIZE_MB, FILESYSTEM, FORMAT, …), or a registry's",
		Long: `Add a marketplace. FILE is an OpenNebula market template, as onemarket create takes it:

  NAME          = "lxc"
  MARKET_MAD    = "linuxcontainers"   # one, linuxcontainers, turnkeylinux, http, s3, dockerhub, registry
  ENDPOINT      = "https://images.example/"
  IMAGE_SIZE_MB = "1024"
  FILESYSTEM    = "ext4"
  FORMAT        = "qcow2"

plus BASE_URL (http: where the marketplace is served; the same as ENDPOINT), PUBLIC_DIR (http:
the directory published into, below the service's SLIPWAY_MARKET_PUBLIC_ROOT), BUCKET (s3: one
of the service's SLIPWAY_MARKET_BUCKETS; no keys: the service uses its own S3 user), TOTAL_MB
(http, s3: the capacity monitor reports), REGISTRY and INSECURE (registry), VARIANT, FTYPE and
ARCH (linuxcontainers; FTYPE is root.tar.xz, the default, or disk-kvm.img, Slipway's own
attribute; ARCH may list several,
separated by spaces or commas) and MONITORING (YES or NO). DESCRIPTION is accepted and not kept;
any other attribute is refused. Flags given override the template. Without FILE, --name and
--registry add a marketplace of an OCI registry (MAD registry). The command goes to the service
owning the MAD (market-lxc or market-dockerhub).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req, err := marketCreateRequest(c, cmd, args, flags)
			if err != nil {
				return err
			}
			if cmd.Flags().Changed("monitoring") || req.Monitoring == nil {
				req.Monitoring = &monitoring
			}
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				want := []string{market.EventMarketCreated}
				if *req.Monitoring {
					want = []string{market.EventAppsRefreshed}
				}
				svc := market.Owner(cmp.Or(req.Mad, schemas.MarketMADRegistry))
				ev, err := marketAnswer(cmd.Context(), b, svc, "market create "+req.Name, market.CommandMarketCreate, req, timeout, want...)
				if err != nil {
					return err
				}
				if ev.Name == market.EventAppsRefreshed {
					return printRefreshed(c.io.out, req.Name, ev)
				}
				fmt.Fprintf(c.io.out, "marketplace %s %q created (monitoring off: run `slipway market refresh %s`)\n", ev.ID, req.Name, req.Name)
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&flags.Name, "name", "", "marketplace name")
	f.StringVar(&flags.Registry, "registry", "", "registry host[:port]")
	f.BoolVar(&flags.Insecure, "insecure", false, "talk plain HTTP to the registry")
	f.BoolVar(&monitoring, "monitoring", true, "list the marketplace again on a schedule")
	f.DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the first listing")
	return cmd
}

// marketCreateRequest is the market-create of a template file (args[0])
// with the flags given on top, or of the flags alone.
func marketCreateRequest(c *client, cmd *cobra.Command, args []string, flags schemas.MarketCreate) (schemas.MarketCreate, error) {
	var req schemas.MarketCreate
	if len(args) == 1 {
		attrs, err := readTemplateFile("market template", args[0], c.io.in)
		if err != nil {
			return req, err
		}
		if req, err = marketTemplate(attrs); err != nil {
			return req, fmt.Errorf("market template %s: %w", args[0], err)
		}
	}
	fl := cmd.Flags()
	if fl.Changed("name") {
		req.Name = flags.Name
	}
	if fl.Changed("registry") {
		req.Registry = flags.Registry
	}
	if fl.Changed("insecure") {
		req.Insecure = flags.Insecure
	}
	switch {
	case req.Name == "":
		return req, errors.New("market create: give the marketplace's NAME (in the template, or --name)")
	case len(args) == 0 && req.Registry == "":
		return req, errors.New("market create: give an OpenNebula market template FILE, or --registry HOST[:PORT]")
	}
	return req, nil
}

// marketTemplate reads OpenNebula's market template attributes into a
// market-create; an attribute it does not know, or a value that does not
// fit, is refused naming it.
func marketTemplate(attrs map[string]string) (schemas.MarketCreate, error) {
	var req schemas.MarketCreate
	for _, name := range slices.Sorted(maps.Keys(attrs)) {
		if err := setMarketAttr(&req, strings.ToUpper(name), strings.TrimSpace(attrs[name])); err != nil {
			return req, fmt.Errorf("%s = %q: %w", name, attrs[name], err)
		}
	}
	return req, nil
}

func setMarketAttr(req *schemas.MarketCreate, name, v string) error {
	var err error
	switch name {
	case "NAME":
		req.Name = v
	case "MARKET_MAD":
		req.Mad = schemas.MarketMAD(strings.ToLower(v))
		if !slices.Contains(schemas.MarketMADValues(), req.Mad) {
			return fmt.Errorf("want one of %v", schemas.MarketMADValues())
		}
	case "ENDPOINT", "BASE_URL":
		req.Endpoint = v
	case "REGISTRY":
		req.Registry = v
	case "INSECURE":
		req.Insecure, err = yesNo(v)
	case "MONITORING":
		var on bool
		on, err = yesNo(v)
		req.Monitoring = &on
	case "IMAGE_SIZE_MB":
		req.ImageSizeMb, err = strconv.ParseInt(v, 10, 64)
	case "FILESYSTEM":
		req.Filesystem = schemas.Filesystem(strings.ToLower(v))
	case "FORMAT":
		req.Format = schemas.DiskFormat(strings.ToLower(v))
	case "VARIANT":
		req.Variant = v
	case "FTYPE":
		req.Ftype = schemas.MarketFileType(strings.ToLower(v))
	case "ARCH", "ARCHES":
		req.Arches = strings.FieldsFunc(v, func(r rune) bool { return r == ',' || r == ' ' })
	case "PUBLIC_DIR":
		req.PublicDir = v
	case "BUCKET":
		req.Bucket = v
	case "TOTAL_MB":
		req.QuotaMb, err = strconv.ParseInt(v, 10, 64)
	case "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "REGION", "SIGNATURE_VERSION", "FORCE_PATH_STYLE", "READ_LENGTH":
		return errors.New("not taken from a template: an s3 marketplace is reached with the service's own S3 user, in one of its SLIPWAY_MARKET_BUCKETS")
	case "DESCRIPTION":
	default:
		return errors.New("not a market template attribute Slipway knows (NAME, MARKET_MAD, ENDPOINT, BASE_URL, PUBLIC_DIR, BUCKET, TOTAL_MB, IMAGE_SIZE_MB, FILESYSTEM, FORMAT, REGISTRY, INSECURE, VARIANT, FTYPE, ARCH, MONITORING, DESCRIPTION)")
	}
	return err
}

func printRefreshed(w io.Writer, name string, ev event) error {
	var r schemas.MarketAppsRefreshed
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
				req := schemas.MarketUpdate{ID: m.ID}
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
				ev, err := marketAnswer(cmd.Context(), b, marketService(m), "market update "+args[0], market.CommandMarketUpdate, req, timeout,
					market.EventMarketUpdated)
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
	f.StringVar(&endpoint, "endpoint", "", "new ENDPOINT (Docker Hub's API, an image server, …)")
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
				if _, err := marketAnswer(cmd.Context(), b, marketService(m), "market delete "+args[0], market.CommandMarketDelete,
					schemas.MarketDelete{ID: m.ID}, timeout, market.EventMarketDeleted); err != nil {
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
				ev, err := marketAnswer(cmd.Context(), b, marketService(m), "market refresh "+args[0], market.CommandRefresh,
					schemas.MarketRefresh{MarketID: m.ID}, timeout, market.EventAppsRefreshed)
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
				markets, err := listMarkets(ctx, b, io.Discard) // the names of the apps' marketplaces
				if err != nil {
					return err
				}
				apps, err := listApps(ctx, b, c.io.err, args, filter)
				if err != nil {
					return err
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

// listApps lists the apps of the marketplace args names (from the service
// owning it), or of every marketplace of every service, by ID.
func listApps(ctx context.Context, b *bus.Bus, warn io.Writer, args []string, filter string) ([]schemas.MarketApp, error) {
	req := schemas.MarketAppsRequest{Filter: filter}
	if len(args) == 0 {
		apps, err := askMarkets[schemas.MarketAppsRequest, schemas.MarketApp](ctx, b, warn, market.QueryApps, req, "list apps")
		slices.SortFunc(apps, func(a, b schemas.MarketApp) int { return cmp.Compare(a.ID, b.ID) })
		return apps, err
	}
	m, err := findMarket(ctx, b, args[0])
	if err != nil {
		return nil, err
	}
	req.MarketID = &m.ID
	q := schemas.Qry[schemas.MarketAppsRequest, schemas.MarketAppsReply]{Service: marketService(m), Endpoint: market.QueryApps}
	return ask(ctx, b, q, req, "list apps of "+args[0])
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

// findApp resolves an app: its ID (asked of every marketplace service),
// MARKET/APP (the app APP of marketplace MARKET, an ID or a name, when
// such a marketplace exists), or a name within marketRef ("": in any
// marketplace, as long as one app has it).
func findApp(ctx context.Context, b *bus.Bus, ref, marketRef string) (schemas.MarketApp, error) {
	id, name := idOrName(ref)
	if marketRef == "" && id == nil {
		if mref, app, ok := strings.Cut(ref, "/"); ok {
			if _, err := findMarket(ctx, b, mref); err == nil {
				marketRef, name = mref, app
			}
		}
	}
	req := schemas.MarketAppShowRequest{ID: id, Name: name}
	services := market.Services()
	if marketRef != "" {
		m, err := findMarket(ctx, b, marketRef)
		if err != nil {
			return schemas.MarketApp{}, err
		}
		req.MarketID, services = &m.ID, []string{marketService(m)}
	}
	var found []schemas.MarketApp
	var last error
	for _, svc := range services {
		q := schemas.Qry[schemas.MarketAppShowRequest, schemas.MarketApp]{Service: svc, Endpoint: market.QueryAppShow}
		a, err := bus.Ask(ctx, b, q, req)
		switch {
		case err == nil:
			found = append(found, a)
		case missed(&last, err):
		default:
			return a, queryError(err, "app "+ref)
		}
	}
	switch len(found) {
	case 0:
		return schemas.MarketApp{}, queryError(last, "app "+ref)
	case 1:
		return found[0], nil
	}
	return schemas.MarketApp{}, fmt.Errorf("apps %d and %d are both named %q: name the marketplace (MARKET/APP or --market) or use the app ID",
		found[0].ID, found[1].ID, ref)
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
		{"MARKETPLACE", fmt.Sprintf("%s (%d)", m.Name, m.ID)}, {"SOURCE", a.Source}, {"VERSION", appVersion(a)},
		{"TAGS", strings.Join(a.Tags, ", ")}, {"SIZE", size}, {"STATE", appState(a)}, {"TYPE", appType(a)},
		{"REGISTER TIME", a.Regtime}}
	lines = appendSet(lines, [][2]string{{"PUBLISHER", a.Publisher}, {"FORMAT", a.Format}, {"KIND", string(a.Kind)},
		{"OS", a.OS}, {"RELEASE", a.Release}, {"ARCH", a.Arch}, {"VARIANT", a.Variant}, {"CHECKSUMS", strings.Join(a.Checksums, " ")},
		{"IMAGE TYPE", string(a.ImageType)}, {"DEV_PREFIX", a.DevPrefix}, {"DRIVER", a.Driver}})
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
		req                schemas.MarketAppImport
		marketRef          string
		filesystem, format string
		timeout            time.Duration
		wait               bool
	)
	cmd := &cobra.Command{
		Use:   "import ID|MARKET/APP|NAME --name IMAGE [--market M --tag T --size MiB --fs ext4 --format qcow2 --datastore default] [--wait]",
		Short: "Import an app as an image, with a VM template for it",
		Long: `Import an app: the catalog creates the image from the app's source (a docker:// URL,
an http(s) download, as its marketplace's driver says), and the launcher gets a VM template
whose disk is that image (DISK = [ IMAGE_ID = N ]).
Prints the image ID once the catalog has registered it; with --wait it then follows
the import until the image is READY or ERROR.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, appIn(marketRef), args[0], func(b *bus.Bus, a schemas.MarketApp) error {
				m, err := findMarket(ctx, b, strconv.FormatInt(a.MarketID, 10))
				if err != nil {
					return err
				}
				req.MarketID, req.App = a.MarketID, a.Name
				req.Filesystem, req.Format = schemas.Filesystem(filesystem), schemas.DiskFormat(format)
				if format == "" && m.Format == "" {
					req.Format = schemas.DiskFormatQcow2 // else "": the marketplace's FORMAT
				}
				return c.importApp(ctx, b, marketService(m), req, timeout, wait)
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Name, "name", "", "name of the image (and VM template) to create")
	f.StringVar(&marketRef, "market", "", "marketplace ID or name, when several have the app")
	f.StringVar(&req.Tag, "tag", "", "tag to import (default: latest, or the app's first tag)")
	f.Int64Var(&req.SizeMiB, "size", 0, "disk size in MiB (default: sized by the builder)")
	f.StringVar(&filesystem, "filesystem", "", "ext2, ext3, ext4 or xfs (default: the marketplace's FILESYSTEM, else ext4)")
	f.StringVar(&filesystem, "fs", "", "the same as --filesystem")
	f.StringVar(&format, "format", "", "raw or qcow2 (default: the marketplace's FORMAT, else qcow2)")
	f.StringVar(&req.Datastore, "datastore", "default", "datastore of the image")
	f.DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the image's registration (with --wait, for its import too)")
	f.BoolVar(&wait, "wait", false, "follow the import until READY or ERROR")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

// importApp sends app-import and reports the image the catalog registered
// and the template sent to the launcher; with wait it then follows the
// image's import.
func (c *client) importApp(ctx context.Context, b *bus.Bus, svc string, req schemas.MarketAppImport, timeout time.Duration, wait bool) error {
	w, env, err := sendWatched(ctx, b, ">", svc, market.CommandAppImport, req)
	if err != nil {
		return err
	}
	defer w.close()
	ev, err := awaitMarket(ctx, w, svc, env, timeout, market.EventAppImported)
	if err != nil {
		return fmt.Errorf("import %s: %w", req.App, err)
	}
	var done schemas.MarketAppImported
	if err := ev.decode(&done); err != nil {
		return err
	}
	ids := done.ImageIds
	if len(ids) == 0 {
		ids = []int64{done.ImageID}
	}
	c.printImported(done, ids)
	if !wait {
		return nil
	}
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	if err := c.followImages(ctx, b, w, ids); err != nil {
		return fmt.Errorf("import %s: %w", req.App, err)
	}
	return nil
}

// printImported says what an app-import created: the image and its VM
// template, an app's several images, or a service's roles.
func (c *client) printImported(done schemas.MarketAppImported, ids []int64) {
	if len(done.Roles) > 0 {
		fmt.Fprintf(c.io.out, "service %s imported as %d VM templates from %s:\n", done.App, len(done.Roles), done.URL)
		for _, r := range done.Roles {
			fmt.Fprintf(c.io.out, "  role %s: VM template %q (app %s), images %s\n", r.Role, r.Name, r.App, joinIDs(r.ImageIds))
		}
		fmt.Fprintf(c.io.out, "sent to the launcher; `slipway market app show %s` prints them\n", done.App)
		return
	}
	if len(ids) == 1 {
		fmt.Fprintf(c.io.out, "image %d %q: importing %s from %s\nVM template %q (DISK = [ IMAGE_ID = %d ]) sent to the launcher; `slipway market app show %s` prints it\n",
			done.ImageID, done.Name, done.App, done.URL, done.Name, done.ImageID, done.App)
		return
	}
	fmt.Fprintf(c.io.out, "images %s: importing the disks of %s\nVM template %q sent to the launcher; `slipway market app show %s` prints it\n",
		joinIDs(ids), done.App, done.Name, done.App)
}

// joinIDs is "3, 4, 5".
func joinIDs(ids []int64) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.FormatInt(id, 10)
	}
	return strings.Join(s, ", ")
}
