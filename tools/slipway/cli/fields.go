package cli

import (
	"fmt"
	"io"
)

// writeInformation prints the information block of a show command: the
// title "<KIND> <id> INFORMATION", then "NAME: value" lines, their names
// padded into one column, as OpenNebula's one*show prints them.
func writeInformation(w io.Writer, kind string, id int64, lines [][2]string) error {
	if _, err := fmt.Fprintf(w, "%s %d INFORMATION\n", kind, id); err != nil {
		return err
	}
	return writeLines(w, lines)
}

// writeSection prints a titled block of "KEY : value" lines after a blank
// line, as show commands print PERMISSIONS; nothing when there are none.
func writeSection(w io.Writer, title string, lines [][2]string) error {
	if len(lines) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\n%s\n", title); err != nil {
		return err
	}
	return writeLines(w, lines)
}

// writeLines prints "NAME: value" lines, the names padded into one column.
func writeLines(w io.Writer, lines [][2]string) error {
	for _, l := range lines {
		if _, err := fmt.Fprintf(w, "%-15s: %s\n", l[0], l[1]); err != nil {
			return err
		}
	}
	return nil
}
