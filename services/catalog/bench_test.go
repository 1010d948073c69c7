package catalog

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// BenchmarkPermissionCheck measures what the catalog adds to every
// command for identity: authorize, the one check the handlers share
// (who sent it, from the users' bucket, and their rights on the image it
// names, from the images' bucket), on a real NATS key-value store. The
// server's own cost (JWT permissions on every publish) is
// pkg/bus's BenchmarkAuthenticatedRoundTrip; the two add up to what
// identity costs a command → event round trip.
func BenchmarkPermissionCheck(b *testing.B) {
	h := newHarness(b)
	alice := h.newUser("alice", "")
	img, err := answerFrom[schemas.Image](h, alice, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "mine", SizeMiB: 1}, schemas.EventCatalogImageCreated)
	if err != nil {
		b.Fatal(err)
	}
	data, _ := json.Marshal(schemas.ImageRename{ID: img.ID, Name: "renamed"})
	cases := []struct{ name, sender string }{
		{"owner", "alice"},       // a user: her record, then the image's bits
		{"oneadmin", "oneadmin"}, // the administrators' group passes, after the same reads
		{"service", ServiceName}, // a service on its own: no user to read
	}
	for _, c := range cases {
		m := &bus.Msg{Service: ServiceName, Name: schemas.CommandCatalogImageRename, Sender: c.sender, Data: data}
		lat := make([]time.Duration, 0, benchChecks)
		for range benchChecks + benchChecks/10 {
			t0 := time.Now()
			if _, err := h.svc.authorize(context.Background(), m); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			lat = append(lat, time.Since(t0))
		}
		lat = lat[benchChecks/10:] // the first ones warm the connection
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		b.ReportMetric(float64(p50.Microseconds()), c.name+"-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), c.name+"-p99-µs")
		b.Logf("authorize as %s: p50 %s p99 %s (%d checks)", c.name, p50, p99, len(lat))
	}
}

// benchChecks is how many checks each case measures, whatever b.N is.
const benchChecks = 1000
