package render

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Column is one column of a text table.
type Column struct {
	Title string
	Right bool // right-aligned, as oneimage aligns numbers
}

// Table writes rows under titled columns, each column as wide as its widest
// cell, separated by one space.
func Table(w io.Writer, cols []Column, rows [][]string) error {
	widths := make([]int, len(cols))
	for i, c := range cols {
		widths[i] = utf8.RuneCountInString(c.Title)
	}
	for _, r := range rows {
		for i := range cols {
			if i < len(r) {
				widths[i] = max(widths[i], utf8.RuneCountInString(r[i]))
			}
		}
	}
	titles := make([]string, len(cols))
	for i, c := range cols {
		titles[i] = c.Title
	}
	if err := writeRow(w, cols, widths, titles); err != nil {
		return err
	}
	for _, r := range rows {
		if err := writeRow(w, cols, widths, r); err != nil {
			return err
		}
	}
	return nil
}

func writeRow(w io.Writer, cols []Column, widths []int, cells []string) error {
	var b strings.Builder
	for i, c := range cols {
		cell := ""
		if i < len(cells) {
			cell = cells[i]
		}
		pad := strings.Repeat(" ", widths[i]-utf8.RuneCountInString(cell))
		if i > 0 {
			b.WriteByte(' ')
		}
		if c.Right {
			b.WriteString(pad + cell)
		} else {
			b.WriteString(cell + pad)
		}
	}
	_, err := io.WriteString(w, strings.TrimRight(b.String(), " ")+"\n")
	return err
}

// ListColumns are oneimage list's columns.
var ListColumns = []Column{
	{Title: "ID", Right: true},
	{Title: "USER"},
	{Title: "GROUP"},
	{Title: "NAME"},
	{Title: "DATASTORE"},
	{Title: "SIZE", Right: true},
	{Title: "TYPE"},
	{Title: "PER", Right: true},
	{Title: "STAT"},
	{Title: "RVMS", Right: true},
}

// ListRow is one image's cells under ListColumns.
func ListRow(img Image) []string {
	return []string{
		strconv.Itoa(img.ID),
		img.User,
		img.Group,
		img.Name,
		img.Datastore,
		HumanSize(img.Size),
		ShortType(img.Type),
		YesNo(img.Persistent),
		ShortState(img.State),
		strconv.Itoa(img.RVMs),
	}
}

// List writes images as oneimage list does.
func List(w io.Writer, images []Image) error {
	rows := make([][]string, len(images))
	for i, img := range images {
		rows[i] = ListRow(img)
	}
	return Table(w, ListColumns, rows)
}

// JSON writes v indented, for --json.
func JSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode JSON: %w", err)
	}
	return nil
}

// JSONList writes list as a JSON array, [] when it is empty, so scripts
// never see null.
func JSONList[T any](w io.Writer, list []T) error {
	if list == nil {
		list = []T{}
	}
	return JSON(w, list)
}
