package tree

import (
	"reflect"
	"strings"
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

// TestLessIsSlashAsNUL: Less orders as comparing the paths with every
// '/' turned into a NUL byte, without making those strings.
func TestLessIsSlashAsNUL(t *testing.T) {
	words := []string{"a", "a/b", "a-b", "a\x00b", "ab", "a/", "b", "a/b/c", "a.b", "ä", "a/ä"}
	for _, a := range words {
		for _, b := range words {
			want := strings.ReplaceAll(a, "/", "\x00") < strings.ReplaceAll(b, "/", "\x00")
			if got := Less(a, b); got != want {
				t.Errorf("Less(%q, %q) = %v, want %v", a, b, got, want)
			}
		}
	}
}
