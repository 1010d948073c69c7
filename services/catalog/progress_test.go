package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

// The catalog republishes the progress of its saga's current step under
// the image, and nothing else: not the progress of a finished saga, of a
// command no saga step sent, of another image, or a payload that is not
// the progress shape.
func TestProgressRepublishedUnderTheImage(t *testing.T) {
	h := newHarness(t)
	progress := func(id int64, p any, opts ...bus.PubOption) {
		t.Helper()
		if _, err := h.converter.Event(h.ctx, workerProgress, idToken(id), p, opts...); err != nil {
			t.Fatal(err)
		}
	}
	causedBy := func(cmd *nats.Msg) bus.PubOption {
		t.Helper()
		env, err := envelope.FromHeader(cmd.Header)
		if err != nil {
			t.Fatal(err)
		}
		return bus.CausedBy(env)
	}

	done := h.create(schemas.ImageCreate{Name: "done", SizeMiB: 1})
	doneCmd, c := h.convertCommand(done.ID)
	h.convert(doneCmd, c, make([]byte, 4096), schemas.DiskFormatRaw)
	h.waitState(done.ID, StateReady)

	img := h.create(schemas.ImageCreate{Name: "busy", SizeMiB: 1})
	cmd, _ := h.convertCommand(img.ID)
	sg, err := h.svc.sagas.Get(h.ctx, img.SagaID)
	if err != nil {
		t.Fatal(err)
	}
	ok := schemas.Progress{ImageID: new(int64(img.ID)), Phase: "mkfs", BytesDone: 7, BytesTotal: 9}
	// Refused, all from one connection so they arrive before the last one.
	progress(done.ID, schemas.Progress{ImageID: new(int64(done.ID)), Phase: "upload", BytesDone: 1}, causedBy(doneCmd))
	progress(img.ID, ok, bus.WithCorrelation(sg.ID), bus.CausedBy(envelope.Envelope{CorrelationID: sg.ID, ID: envelope.NewID()}))
	progress(img.ID, ok) // no saga at all
	progress(img.ID, map[string]any{"image_id": img.ID, "phase": "mkfs\x1b[2J", "bytes_done": 1, "bytes_total": 1}, causedBy(cmd))
	progress(img.ID, schemas.Progress{ImageID: new(int64(done.ID)), Phase: "mkfs"}, causedBy(cmd))
	// Republished.
	progress(img.ID, ok, causedBy(cmd))

	subject := "slipway.evt.catalog.image-progress." + idToken(img.ID)
	m := h.rec.Wait(t, "image-progress", func(m *nats.Msg) bool { return m.Subject == subject })
	var got schemas.ImageProgress
	mustJSON(t, m.Data, &got)
	want := schemas.ImageProgress{ID: img.ID, Step: string(sg.Phase), Phase: "mkfs", BytesDone: 7, BytesTotal: 9}
	if got != want || want.Step == "" {
		t.Errorf("image-progress %+v, want %+v", got, want)
	}
	if err := schemas.Validate(schemas.KindEvent, ServiceName, EvtImageProgress, m.Data); err != nil {
		t.Error(err)
	}
	if corr := m.Header.Get(envelope.HeaderCorrelationID); corr != sg.ID {
		t.Errorf("image-progress correlation %q, want the saga %s", corr, sg.ID)
	}
	time.Sleep(200 * time.Millisecond)
	all := h.rec.All(func(m *nats.Msg) bool { return strings.Contains(m.Subject, ".catalog.image-progress.") })
	if len(all) != 1 {
		for _, m := range all {
			t.Logf("%s %s", m.Subject, m.Data)
		}
		t.Errorf("%d image-progress events, want the one", len(all))
	}
}
