package cli

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/market"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
	"github.com/slipway/slipway/tools/slipway/up"
)

// Publishing into private marketplaces (http, s3): OpenNebula's
// onemarketapp create and delete, market-lxc's app-create and app-delete.

func newMarketAppCreateCmd(c *client) *cobra.Command {
	var (
		req                 schemas.MarketAppCreate
		marketRef, tmplFile string
		timeout             time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create IMAGE --market M --name N [--version V] [--description D] [--vm-template FILE]",
		Short: "Publish an image into a private (http or s3) marketplace, like onemarketapp create",
		Long: `Publish an image (ID or name) into a private marketplace: market-lxc copies the image's blob
with a metadata document (name, version, format, size, sha256, description, VM template) under
the marketplace's PUBLIC_DIR (served at its BASE_URL) or into s3://BUCKET/, then lists it again.
You need use of the image and of the marketplace. Another Slipway, or any HTTP client, can
then list and import it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			if tmplFile != "" {
				b, err := os.ReadFile(tmplFile)
				if err != nil {
					return err
				}
				req.VMTemplate = string(b)
			}
			return withFound(ctx, c, findMarket, marketRef, func(b *bus.Bus, m schemas.Market) error {
				// An ID goes as it is: the service checks the sender's
				// use of the image, and says why it refuses.
				id, _ := idOrName(args[0])
				if id == nil {
					img, err := findImage(ctx, b, args[0])
					if err != nil {
						return err
					}
					n := int64(img.ID)
					id = &n
				}
				req.MarketID, req.ImageID = m.ID, *id
				ev, err := marketAnswer(ctx, b, marketService(m), "market app create "+req.Name, schemas.CommandMarketLxcAppCreate,
					req, timeout, schemas.EventMarketLxcAppCreated)
				if err != nil {
					return err
				}
				var done schemas.MarketAppCreated
				if err := ev.decode(&done); err != nil {
					return err
				}
				app := "app"
				if done.AppID != nil {
					app += " " + strconv.FormatInt(*done.AppID, 10)
				}
				fmt.Fprintf(c.io.out, "%s %q in marketplace %d %q: image %d published to %s (%s, sha256 %s)\n",
					app, done.App, m.ID, m.Name, done.ImageID, done.URL, render.HumanSize(done.Size), done.SHA256)
				if done.AppID == nil {
					fmt.Fprintf(c.io.out, "the marketplace's listing does not show it yet: see `slipway market show %s`\n", m.Name)
				}
				return nil
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&marketRef, "market", "", "the private marketplace (ID or name)")
	f.StringVar(&req.Name, "name", "", "the app's name: letters, digits, '.', '_', '-'")
	f.StringVar(&req.Version, "version", "", "the app's version (default 1.0)")
	f.StringVar(&req.Description, "description", "", "the app's description (default: the image's)")
	f.StringVar(&tmplFile, "vm-template", "", "a file with an OpenNebula VM template to publish with the app")
	f.DurationVar(&timeout, "timeout", 30*time.Minute, "how long to wait for the publication")
	_ = cmd.MarkFlagRequired("market")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newMarketAppDeleteCmd(c *client) *cobra.Command {
	var (
		marketRef string
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "delete ID|MARKET/APP|NAME [--market M]",
		Short: "Delete an app of a private marketplace and what was published, like onemarketapp delete",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, appIn(marketRef), args[0], func(b *bus.Bus, a schemas.MarketApp) error {
				svc := market.Owner(schemas.MarketMADHTTP)
				if _, err := marketAnswer(ctx, b, svc, "market app delete "+args[0], schemas.CommandMarketLxcAppDelete,
					schemas.MarketAppDelete{MarketID: a.MarketID, App: a.Name}, timeout, schemas.EventMarketLxcAppDeleted); err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "app %s %q of marketplace %d deleted\n", strconv.FormatInt(a.ID, 10), a.Name, a.MarketID)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&marketRef, "market", "", "marketplace ID or name, when several have the app")
	cmd.Flags().DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the answer")
	return cmd
}

// newMarketServeCmd serves a public root of http marketplaces read-only
// (e.g. compose's market-public volume; any web server serving the
// directory does as well).
func newMarketServeCmd(c *client) *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:   "serve DIR [--addr HOST:PORT]",
		Short: "Serve the PUBLIC_DIRs of http marketplaces (their public root DIR) read-only over HTTP",
		Long: `Serve DIR, market-lxc's SLIPWAY_MARKET_PUBLIC_ROOT, read-only: PUBLIC_DIR DIR/<dir> is then
BASE_URL http://HOST:PORT/<dir>/. Hidden files (the publishers' .slipway state) and directory
listings are not served. Any web server serving DIR does the same; put TLS in front for other hosts.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			srv := &http.Server{Addr: addr, Handler: up.PublicFiles(args[0]), ReadHeaderTimeout: 10 * time.Second}
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			fmt.Fprintf(c.io.out, "serving %s at http://%s/\n", args[0], addr)
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "addr", "127.0.0.1:8088", "address to listen on")
	return cmd
}
