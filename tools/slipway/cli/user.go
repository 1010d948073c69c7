package cli

// slipway user and slipway group: OpenNebula's users and groups, kept by
// the catalog. Creating either is for the oneadmin group; the NATS server
// refuses the commands to anyone else.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/acl"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/identity"
	"github.com/slipway/slipway/schemas"
)

// catalogCallTimeout bounds how long a user, group or permission command
// waits for the catalog's answer.
const catalogCallTimeout = 30 * time.Second

// invoke sends c's command and decodes the event that answers it (its
// schema's answers), turning a failed event into the service's own message.
func invoke[T, A any](ctx context.Context, b *bus.Bus, c schemas.Cmd[T], data T) (A, error) {
	m, err := call(ctx, b, c.Service, c.Verb, data, c.Answers, catalogCallTimeout)
	if err != nil {
		var none A
		return none, fmt.Errorf("%s: %w", c.Verb, err)
	}
	return decoded[A](m, nil)
}

func newUserCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{Use: "user", Short: "Users: create (writing their credentials file), credentials (a new file, the old revoked), list, show, delete, quota", RunE: unknownSubcommand}
	cmd.AddCommand(newUserCreateCmd(c), newUserCredentialsCmd(c), newUserListCmd(c), newUserShowCmd(c), newUserDeleteCmd(c), newQuotaCmd(c, "user"))
	return cmd
}

func newUserCreateCmd(c *client) *cobra.Command {
	var group, out string
	cmd := &cobra.Command{
		Use:   "create NAME",
		Short: "Create a user and write their NATS credentials file (for the oneadmin group)",
		Long: `Create a user in --group (default users) and write their NATS credentials
file, then print its path. The key is made here: only its public half goes to
the catalog, which signs the user's JWT; the seed goes straight into the file
(0600). Hand the file to the user: slipway --creds FILE, or nats --creds FILE
--inbox-prefix _INBOX_NAME.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.writeCredentials(cmd.Context(), args[0], out, func(b *bus.Bus, key string) (schemas.UserCreated, error) {
				return invoke[schemas.UserCreate, schemas.UserCreated](cmd.Context(), b, schemas.CmdCatalogUserCreate,
					schemas.UserCreate{Name: args[0], Group: group, PublicKey: key})
			})
		},
	}
	cmd.Flags().StringVar(&group, "group", "", "primary group (default users)")
	cmd.Flags().StringVar(&out, "out", "", "where to write the credentials file (default NAME.creds here)")
	return cmd
}

func newUserCredentialsCmd(c *client) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "credentials NAME",
		Short: "Give a user a new NATS credentials file and revoke their old ones (for the oneadmin group)",
		Long: `Write a new NATS credentials file for an existing user, as user create does,
and print its path. The catalog revokes every key the user had before: the NATS
server refuses their old credentials files from now on and closes connections
open with them. For a lost or leaked file. (The credentials slipway up and
slipway identity init wrote for oneadmin are not the catalog's to revoke.)`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.writeCredentials(cmd.Context(), args[0], out, func(b *bus.Bus, key string) (schemas.UserCreated, error) {
				return invoke[schemas.UserCredentials, schemas.UserCreated](cmd.Context(), b, schemas.CmdCatalogUserCredentials,
					schemas.UserCredentials{Name: args[0], PublicKey: key})
			})
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "where to write the credentials file (default NAME.creds here)")
	return cmd
}

// writeCredentials makes a user key for name, has sign (a catalog command)
// sign its JWT and writes both to out (default NAME.creds), never over an
// existing file; it prints the file's path.
func (c *client) writeCredentials(ctx context.Context, name, out string, sign func(b *bus.Bus, key string) (schemas.UserCreated, error)) error {
	if out == "" {
		out = name + ".creds"
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s exists: give another --out", out)
	}
	key, err := identity.NewUserKey()
	if err != nil {
		return err
	}
	return c.withBus(ctx, func(b *bus.Bus) error {
		ev, err := sign(b, key.PublicKey())
		if err != nil {
			return err
		}
		creds, err := key.Credentials(ev.JWT)
		if err != nil {
			return err
		}
		if err := identity.WriteCredentials(out, creds); err != nil {
			return err
		}
		abs, err := filepath.Abs(out)
		if err != nil {
			abs = out
		}
		fmt.Fprintln(c.io.out, abs)
		return nil
	})
}

func newUserListCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the users (for the oneadmin group)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				users, err := ask(cmd.Context(), b, schemas.QryCatalogUsers, schemas.CatalogUsersRequest{}, "list users")
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.io.out, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tGROUP\tGROUPS\tQUOTAS")
				for _, u := range users {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", u.Name, u.Group, strings.Join(u.Groups, ","), quotaSummary(u.Quotas))
				}
				return tw.Flush()
			})
		},
	}
}

func newUserShowCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Show a user: yourself, or anyone for the oneadmin group",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				u, err := ask(cmd.Context(), b, schemas.QryCatalogUser, schemas.CatalogUserRequest{Name: args[0]}, "show user "+args[0])
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.io.out, 0, 8, 1, ' ', 0)
				fmt.Fprintf(tw, "USER %s INFORMATION\n", u.Name)
				fmt.Fprintf(tw, "NAME\t: %s\nGROUP\t: %s\nGROUPS\t: %s\nCREATED\t: %s\n", u.Name, u.Group, strings.Join(u.Groups, ","), u.CreatedAt)
				if err := tw.Flush(); err != nil {
					return err
				}
				return printQuotas(c.io.out, u.Quotas)
			})
		},
	}
}

// newCatalogCmd is a command that sends one catalog command built from its
// arguments and waits for the event that answers it.
func newCatalogCmd[T, A any](c *client, use, short string, args cobra.PositionalArgs, command schemas.Cmd[T],
	data func(ctx context.Context, b *bus.Bus, args []string) (T, error)) *cobra.Command {
	return &cobra.Command{
		Use: use, Short: short, Args: args,
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				payload, err := data(cmd.Context(), b, args)
				if err != nil {
					return err
				}
				_, err = invoke[T, A](cmd.Context(), b, command, payload)
				return err
			})
		},
	}
}

// fromArgs is a payload made from the arguments alone.
func fromArgs[T any](f func(args []string) T) func(context.Context, *bus.Bus, []string) (T, error) {
	return func(_ context.Context, _ *bus.Bus, args []string) (T, error) { return f(args), nil }
}

func newUserDeleteCmd(c *client) *cobra.Command {
	return newCatalogCmd[schemas.UserDelete, schemas.UserDeleted](c, "delete NAME",
		"Delete a user: their credentials are revoked at the NATS server and the catalog takes no more of their commands (for the oneadmin group)", cobra.ExactArgs(1),
		schemas.CmdCatalogUserDelete, fromArgs(func(a []string) schemas.UserDelete { return schemas.UserDelete{Name: a[0]} }))
}

func newGroupCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{Use: "group", Short: "Groups: create, list, delete, add-user, del-user, quota (for the oneadmin group)", RunE: unknownSubcommand}
	cmd.AddCommand(
		newCatalogCmd[schemas.GroupCreate, schemas.GroupCreated](c, "create NAME", "Create a group", cobra.ExactArgs(1), schemas.CmdCatalogGroupCreate,
			fromArgs(func(a []string) schemas.GroupCreate { return schemas.GroupCreate{Name: a[0]} })),
		newCatalogCmd[schemas.GroupDelete, schemas.GroupDeleted](c, "delete NAME", "Delete a group without members", cobra.ExactArgs(1), schemas.CmdCatalogGroupDelete,
			fromArgs(func(a []string) schemas.GroupDelete { return schemas.GroupDelete{Name: a[0]} })),
		newCatalogCmd[schemas.GroupAddUser, schemas.UserUpdated](c, "add-user GROUP USER", "Add a user to a secondary group", cobra.ExactArgs(2), schemas.CmdCatalogGroupAddUser,
			fromArgs(func(a []string) schemas.GroupAddUser { return schemas.GroupAddUser{Group: a[0], User: a[1]} })),
		newCatalogCmd[schemas.GroupDelUser, schemas.UserUpdated](c, "del-user GROUP USER", "Take a user out of a secondary group", cobra.ExactArgs(2), schemas.CmdCatalogGroupDelUser,
			fromArgs(func(a []string) schemas.GroupDelUser { return schemas.GroupDelUser{Group: a[0], User: a[1]} })),
		newGroupListCmd(c), newQuotaCmd(c, "group"))
	return cmd
}

func newGroupListCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use: "list", Short: "List the groups and their members", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				groups, err := ask(cmd.Context(), b, schemas.QryCatalogGroups, schemas.CatalogGroupsRequest{}, "list groups")
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(c.io.out, 0, 8, 2, ' ', 0)
				fmt.Fprintln(tw, "NAME\tUSERS\tQUOTAS")
				for _, g := range groups {
					fmt.Fprintf(tw, "%s\t%s\t%s\n", g.Name, strings.Join(g.Users, ","), quotaSummary(g.Quotas))
				}
				return tw.Flush()
			})
		},
	}
}

// newPermissionCmds are image chmod, chown and chgrp.
func newPermissionCmds(c *client) []*cobra.Command {
	return permissionCmds[schemas.ImageChmod, schemas.ImageChown, schemas.ImageChgrp, schemas.Image](c, "an image's",
		func(ctx context.Context, b *bus.Bus, ref string) (int64, error) {
			img, err := findImage(ctx, b, ref)
			return int64(img.ID), err
		},
		schemas.CmdCatalogImageChmod, func(id int64, p string) schemas.ImageChmod { return schemas.ImageChmod{ID: id, Permissions: p} },
		schemas.CmdCatalogImageChown, func(id int64, u, g string) schemas.ImageChown { return schemas.ImageChown{ID: id, User: u, Group: g} },
		schemas.CmdCatalogImageChgrp, func(id int64, g string) schemas.ImageChgrp { return schemas.ImageChgrp{ID: id, Group: g} })
}

// chmodCmd is "chmod ID|NAME OCTAL" of one kind of object: the bits are
// checked before anything is sent, idOf resolves an ID or name, chmodOf
// makes the payload; A is the answering record.
func chmodCmd[M, A any](c *client, short string, idOf func(context.Context, *bus.Bus, string) (int64, error),
	chmod schemas.Cmd[M], chmodOf func(id int64, perms string) M) *cobra.Command {
	return newCatalogCmd[M, A](c, "chmod ID|NAME OCTAL", short, cobra.ExactArgs(2), chmod,
		func(ctx context.Context, b *bus.Bus, a []string) (M, error) {
			if _, err := acl.ParseOctal(a[1]); err != nil {
				var none M
				return none, err
			}
			id, err := idOf(ctx, b, a[0])
			return chmodOf(id, a[1]), err
		})
}

// permissionCmds are chmod, chown and chgrp of one kind of object (whose:
// "an image's"): idOf resolves an ID or name, and each command's payload
// is made from the ID and the arguments; A is the answering record.
func permissionCmds[M, O, G, A any](c *client, whose string, idOf func(context.Context, *bus.Bus, string) (int64, error),
	chmod schemas.Cmd[M], chmodOf func(id int64, perms string) M,
	chown schemas.Cmd[O], chownOf func(id int64, user, group string) O,
	chgrp schemas.Cmd[G], chgrpOf func(id int64, group string) G) []*cobra.Command {
	return []*cobra.Command{
		chmodCmd[M, A](c, "Change "+whose+" permissions, e.g. 640 (owner um-, group u--)", idOf, chmod, chmodOf),
		newCatalogCmd[O, A](c, "chown ID|NAME USER [GROUP]", "Give "+strings.TrimSuffix(whose, "'s")+" to another user (and group)", cobra.RangeArgs(2, 3), chown,
			func(ctx context.Context, b *bus.Bus, a []string) (O, error) {
				id, err := idOf(ctx, b, a[0])
				group := ""
				if len(a) == 3 {
					group = a[2]
				}
				return chownOf(id, a[1], group), err
			}),
		newCatalogCmd[G, A](c, "chgrp ID|NAME GROUP", "Change "+whose+" group", cobra.ExactArgs(2), chgrp,
			func(ctx context.Context, b *bus.Bus, a []string) (G, error) {
				id, err := idOf(ctx, b, a[0])
				return chgrpOf(id, a[1]), err
			}),
	}
}
