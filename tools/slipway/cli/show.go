package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The show and list commands: each gets records over the bus and prints
// them for a person, or for scripts with --json.

// newShowCmd makes the show command of one kind of record: find resolves
// its one argument (an ID or a name), text prints the record for a
// person, --json prints it as a JSON object.
func newShowCmd[T any](c *client, use, short string, find func(context.Context, *bus.Bus, string) (T, error),
	text func(io.Writer, T) error) *cobra.Command {
	return newPrintCmd(c, &cobra.Command{Use: use, Short: short, Args: cobra.ExactArgs(1)},
		func(ctx context.Context, b *bus.Bus, args []string) (T, error) { return find(ctx, b, args[0]) },
		text, func(w io.Writer, v T) error { return render.JSON(w, v) }, "print a JSON object")
}

// newListCmd makes the list command of one kind of record: list gets
// them all, text prints them for a person (a table), --json prints a JSON
// array ([] when there are none).
func newListCmd[T any](c *client, use, short string, list func(context.Context, *bus.Bus) ([]T, error),
	text func(io.Writer, []T) error) *cobra.Command {
	return newPrintCmd(c, &cobra.Command{Use: use, Short: short, Args: cobra.NoArgs},
		func(ctx context.Context, b *bus.Bus, _ []string) ([]T, error) { return list(ctx, b) },
		text, render.JSONList[T], "print a JSON array")
}

// newPrintCmd gives cmd its RunE and its --json flag (described by
// jsonHelp): get fetches a value with the command's arguments, which
// text prints for a person and asJSON for scripts.
func newPrintCmd[T any](c *client, cmd *cobra.Command, get func(context.Context, *bus.Bus, []string) (T, error),
	text, asJSON func(io.Writer, T) error, jsonHelp string) *cobra.Command {
	var jsonOut bool
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		return c.withBus(cmd.Context(), func(b *bus.Bus) error {
			v, err := get(cmd.Context(), b, args)
			if err != nil {
				return err
			}
			if jsonOut {
				return asJSON(c.io.out, v)
			}
			return text(c.io.out, v)
		})
	}
	cmd.Flags().BoolVar(&jsonOut, "json", false, jsonHelp)
	return cmd
}
