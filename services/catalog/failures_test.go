package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// TestWorkerAttemptIsRepublishedUnderTheImage: a converter attempt that
// failed and will be retried is shown under the image (catalog.failed.<id>
// with the attempt, its code and when the next comes); it does not end the
// import, which then succeeds.
func TestWorkerAttemptIsRepublishedUnderTheImage(t *testing.T) {
	h := newHarness(t)
	env := h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "flaky", Path: "https://files.invalid/flaky.raw"})
	cmd, c := h.convertCommand(0)
	next := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339)
	h.converterEvent(cmd, "failed", 0, schemas.Failure{Code: schemas.CodeUnavailable, ImageID: new(int64(0)),
		Phase: string(schemas.ConverterPhaseFetch), Error: "GET https://files.invalid/flaky.raw: 503 Service Unavailable",
		Retryable: true, Command: cmd.Subject, Attempt: 1, MaxAttempts: 10, NextAttemptAt: next})
	m, f := h.waitFailed(env)
	if m.Subject != "slipway.evt.catalog.failed.0" || f.Code != schemas.CodeUnavailable || !f.Retryable ||
		f.Attempt != 1 || f.MaxAttempts != 10 || f.NextAttemptAt != next || !strings.Contains(f.Error, "503") ||
		f.ImageID == nil || *f.ImageID != 0 {
		t.Fatalf("%s %+v: want attempt 1 under image 0, with its code and next attempt", m.Subject, f)
	}
	if err := schemas.Validate(schemas.KindEvent, ServiceName, schemas.EventCatalogFailed, m.Data); err != nil {
		t.Error(err)
	}
	if img := h.mustShow(0); State(img.State) != StateLocked {
		t.Fatalf("after a failed attempt the image is %s, want still LOCKED", img.State)
	}
	h.convert(cmd, c, []byte("a disk at last"), schemas.DiskFormatRaw)
	h.waitState(0, StateReady)
}

// TestRefusalsCarryTheirCode: a command refused because its image is
// LOCKED says image-locked, for a caller to wait on; one naming no image
// says not-found.
func TestRefusalsCarryTheirCode(t *testing.T) {
	h := newHarness(t)
	h.command(schemas.CommandCatalogImageCreate, schemas.ImageCreate{Name: "busy", Path: "https://files.invalid/busy.raw"})
	h.convertCommand(0) // the import holds the image LOCKED
	_, err := h.cli.Call(h.ctx, ServiceName, schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: 0}, []string{schemas.EventCatalogImageDeleted})
	if !bus.IsCallError(err) || bus.CodeOf(err) != schemas.CodeImageLocked {
		t.Fatalf("delete of a LOCKED image: %v, want the code image-locked", err)
	}
	_, err = h.cli.Call(h.ctx, ServiceName, schemas.CommandCatalogImageDelete, schemas.ImageRef{ID: 42}, []string{schemas.EventCatalogImageDeleted})
	if bus.CodeOf(err) != schemas.CodeNotFound {
		t.Fatalf("delete of no image: %v, want the code not-found", err)
	}
}
