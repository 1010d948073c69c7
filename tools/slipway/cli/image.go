package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// defaultActionTimeout bounds the wait for the catalog's answer to a
// command other than a --wait create.
const defaultActionTimeout = time.Minute

func newImageCmd(g *globals) *cobra.Command {
	c := &g.client
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage images (like OpenNebula's oneimage)",
		// cobra shows help and succeeds for an unknown subcommand of a
		// command without Run; a typo must fail instead.
		RunE: unknownSubcommand,
	}
	cmd.AddCommand(
		newCreateCmd(g),
		newImageListCmd(c),
		newImageShowCmd(c),
		newTopCmd(c),
		newRefCmd(c, "delete", "Delete an image and its data", schemas.CommandCatalogImageDelete),
		newRefCmd(c, "enable", "Enable a disabled image", schemas.CommandCatalogImageEnable),
		newRefCmd(c, "disable", "Disable an image: no new VM may use it", schemas.CommandCatalogImageDisable),
		newRefCmd(c, "persistent", "Make an image persistent", schemas.CommandCatalogImagePersistent),
		newRefCmd(c, "nonpersistent", "Make an image non-persistent", schemas.CommandCatalogImageNonpersistent),
		newRenameCmd(c),
		newUpdateCmd(c),
		newImageURLCmd(c),
		newImageS3CredsCmd(c),
		newImageCloneCmd(c),
		newImageLockCmd(c),
		newImageUnlockCmd(c),
		newImageOrphansCmd(c),
	)
	cmd.AddCommand(newPermissionCmds(c)...)
	cmd.AddCommand(newImageSnapshotCmds(c)...)
	return cmd
}

func newImageListCmd(c *client) *cobra.Command {
	var all, mine, group bool
	cmd := newListCmd(c, "list", "List images (ID USER GROUP NAME DATASTORE SIZE TYPE PER STAT RVMS)",
		func(ctx context.Context, b *bus.Bus) ([]render.Image, error) {
			f := schemas.ListFilterAll
			switch {
			case mine:
				f = schemas.ListFilterMine
			case group:
				f = schemas.ListFilterGroup
			}
			images, err := listImagesFiltered(ctx, b, f)
			if err != nil {
				return nil, err
			}
			slices.SortFunc(images, func(a, b render.Image) int { return a.ID - b.ID })
			return images, nil
		}, render.List)
	cmd.Long = `List images, as oneimage list does: by default (--all) every image you may
use (yours, your groups' whose group bits allow use, anyone's whose other bits
do); for the oneadmin group every image. --mine lists your own, --group yours
and those of the groups you are in (still only those you may use).`
	cmd.Flags().BoolVarP(&all, "all", "a", false, "every image you may use (the default; the oneadmin group: every image)")
	cmd.Flags().BoolVarP(&mine, "mine", "m", false, "only your own images")
	cmd.Flags().BoolVarP(&group, "group", "g", false, "your images and those of the groups you are in")
	cmd.MarkFlagsMutuallyExclusive("all", "mine", "group")
	return cmd
}

func newImageShowCmd(c *client) *cobra.Command {
	return newShowCmd(c, "show ID|NAME", "Show one image", findImage, func(w io.Writer, img render.Image) error {
		return render.Show(w, img, nil)
	})
}

// action is one catalog command about an existing image.
type action struct {
	verb    string
	payload func(id int64) any
	// reached tells whether img already is what the command asks for. The
	// catalog publishes nothing for a command that changes nothing, so
	// this both skips such a command and ends the wait should the change
	// be seen before (or instead of) its event.
	reached func(img render.Image) bool
}

func refAction(verb string) action {
	a := action{verb: verb, payload: func(id int64) any { return schemas.ImageRef{ID: id} }}
	switch verb {
	case schemas.CommandCatalogImageEnable:
		a.reached = func(img render.Image) bool { return img.State == string(schemas.ImageStateReady) }
	case schemas.CommandCatalogImageDisable:
		a.reached = func(img render.Image) bool { return img.State == string(schemas.ImageStateDisabled) }
	case schemas.CommandCatalogImagePersistent:
		a.reached = func(img render.Image) bool { return img.Persistent }
	case schemas.CommandCatalogImageNonpersistent:
		a.reached = func(img render.Image) bool { return !img.Persistent }
	}
	return a
}

// newRefCmd makes a command whose only argument is the image: delete,
// enable, disable, persistent, nonpersistent.
func newRefCmd(c *client, use, short, verb string) *cobra.Command {
	return newActionCmd(c, use+" ID|NAME", short, 1, func([]string) (action, error) { return refAction(verb), nil })
}

func newRenameCmd(c *client) *cobra.Command {
	return newActionCmd(c, "rename ID|NAME NEW_NAME", "Rename an image", 2, func(args []string) (action, error) {
		return action{
			verb:    schemas.CommandCatalogImageRename,
			payload: func(id int64) any { return schemas.ImageRename{ID: id, Name: args[1]} },
			reached: func(img render.Image) bool { return img.Name == args[1] },
		}, nil
	})
}

func newUpdateCmd(c *client) *cobra.Command {
	var (
		attrs   []string
		replace bool
	)
	cmd := newActionCmd(c, "update ID|NAME --attr KEY=VALUE...",
		"Change an image's attributes (merge; KEY= removes a key; --replace replaces them all)", 1,
		func([]string) (action, error) {
			m, err := parseAttrs(attrs)
			if err != nil {
				return action{}, err
			}
			if len(m) == 0 && !replace {
				return action{}, &ExitError{Code: 2, Err: errors.New("image update: give at least one --attr KEY=VALUE (or --replace to clear them all)")}
			}
			return action{
				verb:    schemas.CommandCatalogImageUpdate,
				payload: func(id int64) any { return schemas.ImageUpdate{ID: id, Attributes: m, Replace: replace} },
				reached: func(img render.Image) bool { return attrsReached(img.Attributes, m, replace) },
			}, nil
		})
	cmd.Flags().StringArrayVar(&attrs, "attr", nil, "attribute KEY=VALUE (repeatable)")
	cmd.Flags().BoolVar(&replace, "replace", false, "replace all attributes instead of merging")
	return cmd
}

// newActionCmd makes a command about the image its first of nargs
// arguments names: act makes the catalog command of the arguments (its
// error refuses the command line before anything is sent), which is sent
// and awaited --timeout long at most.
func newActionCmd(c *client, use, short string, nargs int, act func(args []string) (action, error)) *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(nargs),
		RunE: func(cmd *cobra.Command, args []string) error {
			a, err := act(args)
			if err != nil {
				return err
			}
			return c.act(cmd.Context(), args[0], timeout, a)
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", defaultActionTimeout, "how long to wait for the catalog's answer")
	return cmd
}

// attrsReached tells whether have already is the result of updating with
// want: merging (a "" value removes its key) or replacing.
func attrsReached(have, want map[string]string, replace bool) bool {
	if replace {
		n := 0
		for k, v := range want {
			if v == "" {
				continue
			}
			n++
			if have[k] != v {
				return false
			}
		}
		return len(have) == n
	}
	for k, v := range want {
		if cur, ok := have[k]; v == "" && ok || v != "" && cur != v {
			return false
		}
	}
	return true
}

// pollInterval is how often act looks at the image while it waits.
const pollInterval = 2 * time.Second

// act publishes one catalog command about an image and waits for its
// outcome, printing what changed.
func (c *client) act(ctx context.Context, ref string, timeout time.Duration, a action) error {
	return withFound(ctx, c, resolve, ref, func(b *bus.Bus, id int64) error {
		return c.actOn(ctx, b, id, timeout, a)
	})
}

// actOn is act on the image id.
func (c *client) actOn(ctx context.Context, b *bus.Bus, id int64, timeout time.Duration, a action) error {
	what := strings.TrimPrefix(a.verb, "image-")
	if a.reached != nil {
		img, err := showImage(ctx, b, id)
		if err != nil {
			return err
		}
		if a.reached(img) {
			fmt.Fprintf(c.io.out, "image %d: nothing to %s (%s)\n", id, what, summary(img))
			return nil
		}
	}
	w, env, err := sendWatched(ctx, b, "catalog.>", schemas.ServiceCatalog, a.verb, a.payload(id), bus.WithSubject(fmt.Sprint(id)))
	if err != nil {
		return err
	}
	defer w.close()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	poll := func(ctx context.Context) bool {
		img, err := showImage(ctx, b, id)
		if a.verb == schemas.CommandCatalogImageDelete {
			return errors.Is(err, errNoImage)
		}
		return err == nil && a.reached != nil && a.reached(img)
	}
	ev, err := awaitOutcome(ctx, w, env.CorrelationID, func(ev event) bool {
		if a.verb == schemas.CommandCatalogImageDelete {
			return ev.Name == schemas.EventCatalogImageDeleted
		}
		return ev.Name == schemas.EventCatalogStateChanged || ev.Name == schemas.EventCatalogImageUpdated
	}, poll, pollInterval)
	if err != nil {
		return fmt.Errorf("image %d: %s: %w", id, what, err)
	}
	fmt.Fprintln(c.io.out, describeOutcome(id, a.verb, ev))
	return nil
}

// summary is the part of an image a no-op message mentions.
func summary(img render.Image) string {
	return fmt.Sprintf("%s, persistent %s, %d attributes", img.State, render.YesNo(img.Persistent), len(img.Attributes))
}

// describeOutcome says in one line what a command did.
func describeOutcome(id int64, verb string, ev event) string {
	switch ev.Name {
	case schemas.EventCatalogImageDeleted:
		return fmt.Sprintf("image %d deleted", id)
	case schemas.EventCatalogStateChanged:
		var sc schemas.StateChanged
		if ev.decode(&sc) == nil {
			return fmt.Sprintf("image %d: %s -> %s", id, sc.From, sc.To)
		}
	case schemas.EventCatalogImageUpdated:
		var img render.Image
		if ev.decode(&img) == nil {
			switch verb {
			case schemas.CommandCatalogImageRename:
				return fmt.Sprintf("image %d renamed to %q", id, img.Name)
			case schemas.CommandCatalogImagePersistent, schemas.CommandCatalogImageNonpersistent:
				return fmt.Sprintf("image %d: persistent %s", id, render.YesNo(img.Persistent))
			case schemas.CommandCatalogImageUpdate:
				return fmt.Sprintf("image %d updated: %d attributes", id, len(img.Attributes))
			}
		}
	}
	if verb == schemas.CommandCatalogImageDelete {
		return fmt.Sprintf("image %d deleted", id)
	}
	return fmt.Sprintf("image %d: %s done", id, strings.TrimPrefix(verb, "image-"))
}

// parseAttrs reads repeated KEY=VALUE flags. Keys are upper-cased, as
// OpenNebula template attributes are.
func parseAttrs(list []string) (map[string]string, error) {
	m := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.ToUpper(strings.TrimSpace(k))
		if !ok || k == "" {
			return nil, &ExitError{Code: 2, Err: fmt.Errorf("--attr %q: want KEY=VALUE", kv)}
		}
		m[k] = v
	}
	return m, nil
}
