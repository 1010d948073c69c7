package cli

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// --wait follows the catalog's image-progress subject only: a saga step
// and a phase it has never heard of are drawn like any other, a worker's
// own progress event is not, and neither is an image-progress that does
// not match its schema.
func TestFollowShowsAnyStepTheCatalogReports(t *testing.T) {
	url, _ := testenv.NATS(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	connect := func(service string) *bus.Bus { return testenv.Connect(t, ctx, url, service) }
	cli, catalog, converter := connect("cli"), connect(schemas.ServiceCatalog), connect(schemas.ServiceConverter)
	if err := catalog.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := watch(cli.Conn(), cli.Prefix(), "catalog.>")
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	var stderr bytes.Buffer
	g := &client{io: streams{in: strings.NewReader(""), out: io.Discard, err: &stderr}}
	done := make(chan error, 1)
	go func() { done <- g.follow(ctx, cli, w, render.Image{ID: 5, State: string(schemas.ImageStateLocked)}) }()

	publish := func(b *bus.Bus, event string, v any) {
		t.Helper()
		if _, err := b.Event(ctx, event, "5", v); err != nil {
			t.Fatal(err)
		}
	}
	publish(converter, schemas.EventConverterProgress, schemas.Progress{ImageID: new(int64(5)), Phase: "own", BytesDone: 1, BytesTotal: 2})
	publish(catalog, schemas.EventCatalogImageProgress, map[string]any{"id": 5, "step": "scan", "phase": "x\x1b[2J", "bytes_done": 1, "bytes_total": 2})
	publish(catalog, schemas.EventCatalogImageProgress, schemas.ImageProgress{ID: 5, Step: "scan", Phase: "hash", BytesDone: 3 << 20, BytesTotal: 4 << 20})
	publish(catalog, schemas.EventCatalogStateChanged, schemas.StateChanged{ID: 5, From: schemas.ImageStateLocked, To: schemas.ImageStateError, Error: "stop here"})

	var exit *ExitError
	if err := <-done; !errors.As(err, &exit) {
		t.Fatalf("follow: %v, want the image's ERROR", err)
	}
	out := stderr.String()
	if !strings.Contains(out, "image 5 scan/hash 75% (3M of 4M)") || !strings.Contains(out, "image 5: ERROR: stop here") {
		t.Errorf("stderr lacks the scan step's progress:\n%s", out)
	}
	if strings.Contains(out, "own") || strings.Contains(out, "\x1b") {
		t.Errorf("stderr shows what the catalog did not republish, or a control sequence:\n%q", out)
	}
}
