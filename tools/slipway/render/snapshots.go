package render

import (
	"io"
	"strconv"
	"time"
)

// Snapshot is one snapshot of an image or of a VM disk (the schemas'
// ImageSnapshot): an internal qcow2 snapshot in a tree with one active.
type Snapshot struct {
	ID     int64  `json:"id"`
	Name   string `json:"name"`
	Parent int64  `json:"parent"`
	Active bool   `json:"active"`
	Date   string `json:"date"` // RFC 3339
	Size   int64  `json:"size,omitempty"`
}

// SnapshotTable writes snapshots as OpenNebula's snapshot list does: ID,
// NAME, PARENT (- for a root), ACTIVE (yes for the one the disk descends
// from), DATE in loc and SIZE.
func SnapshotTable(w io.Writer, snaps []Snapshot, loc *time.Location) error {
	if loc == nil {
		loc = time.Local
	}
	cols := []Column{{Title: "ID", Right: true}, {Title: "NAME"}, {Title: "PARENT", Right: true}, {Title: "ACTIVE"},
		{Title: "DATE"}, {Title: "SIZE", Right: true}}
	rows := make([][]string, len(snaps))
	for i, s := range snaps {
		parent := "-"
		if s.Parent >= 0 {
			parent = strconv.FormatInt(s.Parent, 10)
		}
		date := s.Date
		if t, err := time.Parse(time.RFC3339, s.Date); err == nil {
			date = t.In(loc).Format("01/02 15:04:05")
		}
		rows[i] = []string{strconv.FormatInt(s.ID, 10), s.Name, parent, YesNo(s.Active), date, HumanSize(s.Size)}
	}
	return Table(w, cols, rows)
}
