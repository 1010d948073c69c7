package fsimage

import (
	"context"
	"strings"
	"testing"
)

// The tools that read a hostile layer's tree get none of the builder's
// environment: no registry credential or S3 key reaches them.
func TestToolsGetAnEmptyEnvironment(t *testing.T) {
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	var lines []string
	if _, err := run(context.Background(), func(l string) error { lines = append(lines, l); return nil }, "env"); err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(lines, " "), strings.Join(toolEnv(), " "); got != want {
		t.Fatalf("tool environment %q, want %q", got, want)
	}
}
