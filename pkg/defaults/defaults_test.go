package defaults

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"
)

func TestPositive(t *testing.T) {
	for _, c := range []struct{ v, want time.Duration }{
		{0, time.Second},
		{-time.Minute, time.Second},
		{time.Nanosecond, time.Nanosecond},
		{time.Hour, time.Hour},
	} {
		if got := Positive(c.v, time.Second); got != c.want {
			t.Errorf("Positive(%v, 1s) = %v, want %v", c.v, got, c.want)
		}
	}
	if got := Positive(int64(-1), 7); got != 7 {
		t.Errorf("Positive(-1, 7) = %d, want 7", got)
	}
	if got := Positive(3, 7); got != 3 {
		t.Errorf("Positive(3, 7) = %d, want 3", got)
	}
}

type config struct {
	Name     string
	Wait     time.Duration
	Count    int
	Size     int64
	List     []string
	Labels   map[string]string
	Verbose  bool
	Optional string // no default
	hidden   int
}

func TestFill(t *testing.T) {
	def := config{Name: "n", Wait: time.Second, Count: 2, Size: 3, List: []string{"a"},
		Labels: map[string]string{"k": "v"}, Verbose: true, hidden: 9}
	for _, c := range []struct {
		name      string
		cfg, want config
	}{
		{"zero takes every default", config{}, config{Name: "n", Wait: time.Second, Count: 2, Size: 3,
			List: []string{"a"}, Labels: map[string]string{"k": "v"}, Verbose: true}},
		{"negative numbers and empty collections are unset",
			config{Wait: -1, Count: -5, Size: -1, List: []string{}, Labels: map[string]string{}},
			config{Name: "n", Wait: time.Second, Count: 2, Size: 3, List: []string{"a"},
				Labels: map[string]string{"k": "v"}, Verbose: true}},
		{"set fields stay", config{Name: "x", Wait: time.Minute, Count: 1, Size: 1, List: []string{"b"},
			Labels: map[string]string{"a": "b"}, Verbose: true, Optional: "o", hidden: 1},
			config{Name: "x", Wait: time.Minute, Count: 1, Size: 1, List: []string{"b"},
				Labels: map[string]string{"a": "b"}, Verbose: true, Optional: "o", hidden: 1}},
	} {
		got := c.cfg
		Fill(&got, def)
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: Fill = %+v, want %+v", c.name, got, c.want)
		}
	}
}

func TestPath(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	called := false
	def := func() string { called = true; return "d" }
	if got := Path("/x/y", def); got != "/x/y" || called {
		t.Errorf("Path(/x/y) = %q (default called: %v), want /x/y without the default", got, called)
	}
	if got := Path("rel", def); got != filepath.Join(wd, "rel") || called {
		t.Errorf("Path(rel) = %q (default called: %v), want %s", got, called, filepath.Join(wd, "rel"))
	}
	if got := Path("", def); got != filepath.Join(wd, "d") || !called {
		t.Errorf("Path(\"\") = %q (default called: %v), want %s", got, called, filepath.Join(wd, "d"))
	}
}
