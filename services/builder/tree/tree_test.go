package tree

import (
	"reflect"
	"testing"
)

func TestClean(t *testing.T) {
	for in, want := range map[string]string{
		"/": ".", ".": ".", "./": ".", "./usr/bin/": "usr/bin", "/etc//passwd": "etc/passwd",
		"a/../b": "b", "../../etc": "etc",
	} {
		if got := Clean(in); got != want {
			t.Errorf("Clean(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestEntriesOrderAndRemove(t *testing.T) {
	tr := New()
	for _, p := range []string{"a-b", "a/b/c", "a", "a/b", "z"} {
		tr.Put(&Entry{Path: p, Type: Dir})
	}
	var got []string
	for _, e := range tr.Entries() {
		got = append(got, e.Path)
	}
	if want := []string{".", "a", "a/b", "a/b/c", "a-b", "z"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	tr.Remove("a")
	if _, ok := tr.Get("a/b/c"); ok || tr.Len() != 3 {
		t.Fatalf("Remove(a) left %d entries", tr.Len())
	}
	if _, ok := tr.Get("a-b"); !ok {
		t.Fatal("Remove(a) removed a sibling a-b")
	}
}
