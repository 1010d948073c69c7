package jobs

import (
	"reflect"
	"testing"
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
