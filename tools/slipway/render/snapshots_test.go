package render

import (
	"strings"
	"testing"
	"time"
)

// TestShowSnapshots: image show lists a persistent image's snapshots as
// OpenNebula's table: ID NAME PARENT ACTIVE DATE SIZE, a root's parent "-".
func TestShowSnapshots(t *testing.T) {
	img := Image{ID: 4, Name: "db", Type: "DATABLOCK", State: "READY", Persistent: true, Snapshots: []Snapshot{
		{ID: 0, Name: "before", Parent: -1, Date: "2026-12-07T09:00:00Z", Size: 1 << 30},
		{ID: 1, Name: "after", Parent: 0, Active: true, Date: "2026-12-07T09:05:00Z", Size: 1 << 30},
	}}
	var b strings.Builder
	if err := Show(&b, img, time.UTC); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{"IMAGE SNAPSHOTS", "ID NAME   PARENT ACTIVE DATE            SIZE",
		" 0 before      - No     12/07 09:00:00 1024M", " 1 after       0 Yes    12/07 09:05:00 1024M"} {
		if !strings.Contains(out, want) {
			t.Errorf("show lacks %q:\n%s", want, out)
		}
	}
	b.Reset()
	img.Snapshots = nil
	_ = Show(&b, img, time.UTC)
	if strings.Contains(b.String(), "SNAPSHOTS") {
		t.Errorf("an image without snapshots shows a snapshot table:\n%s", b.String())
	}
}
