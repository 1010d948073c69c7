package jobs

import (
	"reflect"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/envelope"
	"github.com/slipway/slipway/schemas"
)

type phase string

type fakeJob struct {
	name string
	Progress[phase]
}

func TestSetListsJobsInStartOrder(t *testing.T) {
	var s Set[fakeJob]
	a, b, c := &fakeJob{name: "a"}, &fakeJob{name: "b"}, &fakeJob{name: "c"}
	s.Add(a)
	s.Add(b)
	s.Add(c)
	s.Remove(b)
	got := List(&s, func(j *fakeJob) string { return j.name })
	if want := []string{"a", "c"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %v, want %v", got, want)
	}
}

func TestProgressPhaseResetsBytes(t *testing.T) {
	var p Progress[phase]
	if p.Phase() != "" {
		t.Fatalf("phase before SetPhase = %q", p.Phase())
	}
	p.SetPhase("fetch", 0)
	p.Update(10, 100)
	p.Update(20, 0) // a step that does not know the total keeps the last one
	if d, tot := p.Bytes(); d != 20 || tot != 100 {
		t.Fatalf("bytes %d of %d, want 20 of 100", d, tot)
	}
	p.SetPhase("upload", 50)
	if d, tot := p.Bytes(); p.Phase() != "upload" || d != 0 || tot != 50 {
		t.Fatalf("after SetPhase: %s %d of %d", p.Phase(), d, tot)
	}
}

func TestJobBegin(t *testing.T) {
	var j Job[string]
	j.Update(5, 10) // left over from nothing: Begin starts afresh
	before := time.Now().UTC()
	j.Begin(&bus.Msg{Envelope: envelope.Envelope{ID: "cmd-1"}, Delivered: 3}, 42, "fetch")
	done, total := j.Bytes()
	if j.ID != "cmd-1" || j.ImageID != 42 || j.Delivered != 3 || j.Phase() != "fetch" || done != 0 || total != 0 {
		t.Fatalf("after Begin: id %q image %d delivered %d phase %q bytes %d/%d", j.ID, j.ImageID, j.Delivered, j.Phase(), done, total)
	}
	started, err := time.Parse(time.RFC3339Nano, j.StartedAt())
	if err != nil || started.Before(before) || started.Location() != time.UTC {
		t.Fatalf("StartedAt = %q (%v), want a UTC time from Begin", j.StartedAt(), err)
	}
}

// Row fills the fields every worker's row has, in each worker's contract
// type; a row without an image (a kernel add's) keeps none.
func TestRowOfEveryWorker(t *testing.T) {
	var j Job[schemas.BuilderPhase]
	j.Begin(&bus.Msg{Envelope: envelope.Envelope{ID: "cmd-1"}, Delivered: 2}, 42, schemas.BuilderPhaseUpload)
	j.Update(5, 10)
	b := Row[schemas.BuilderJob](&j)
	want := schemas.BuilderJob{ID: "cmd-1", ImageID: 42, Phase: schemas.BuilderPhaseUpload, BytesDone: 5, BytesTotal: 10,
		Delivered: 2, StartedAt: j.StartedAt()}
	if b != want {
		t.Errorf("builder row %+v, want %+v", b, want)
	}
	var c Job[schemas.ConverterPhase]
	c.Begin(&bus.Msg{Envelope: envelope.Envelope{ID: "cmd-2"}, Delivered: 1}, 7, schemas.ConverterPhaseFetch)
	if r := Row[schemas.ConverterJob](&c); r.ID != "cmd-2" || r.ImageID != 7 || r.Phase != schemas.ConverterPhaseFetch || r.Delivered != 1 {
		t.Errorf("converter row %+v", r)
	}
	var l Job[schemas.LuksPhase]
	l.Begin(&bus.Msg{Envelope: envelope.Envelope{ID: "cmd-3"}, Delivered: 1}, 8, schemas.LuksPhaseEncrypt)
	if r := Row[schemas.LuksJob](&l); r.ID != "cmd-3" || r.ImageID != 8 || r.Phase != schemas.LuksPhaseEncrypt || r.StartedAt == "" {
		t.Errorf("crypto-luks row %+v", r)
	}
	var k Job[schemas.KernelRegistryPhase]
	k.Begin(&bus.Msg{Envelope: envelope.Envelope{ID: "cmd-4"}, Delivered: 3}, 0, schemas.KernelRegistryPhaseDownload)
	if r := Row[schemas.KernelRegistryJob](&k); r.ID != "cmd-4" || r.Phase != schemas.KernelRegistryPhaseDownload || r.Delivered != 3 {
		t.Errorf("kernel-registry row %+v", r)
	}
}

// A row type without a field every row has is a programming error.
func TestRowPanicsOnAForeignType(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	var j Job[phase]
	Row[struct{ ID string }](&j)
}
