package cli

import (
	"fmt"
	"io"
)

// writeFields prints the "NAME: value" lines of a show command, its
// names padded into one column as OpenNebula's one*show prints them.
func writeFields(w io.Writer, lines [][2]string) error {
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-15s: %s\n", l[0], l[1]); err != nil {
			return err
		}
	}
	return nil
}
