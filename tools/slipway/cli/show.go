package cli

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/tools/slipway/render"
)

// newShowCmd makes the show command of one kind of record: find resolves
// its one argument (an ID or a name), text prints the record for a
// person, --json prints it as a JSON object.
func newShowCmd[T any](c *client, use, short string, find func(context.Context, *bus.Bus, string) (T, error),
	text func(io.Writer, T) error) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, find, args[0], func(_ *bus.Bus, v T) error {
				if asJSON {
					return render.JSON(c.io.out, v)
				}
				return text(c.io.out, v)
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print a JSON object")
	return cmd
}
