package qemuimg

import (
	"context"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/run"
)

// qemu-img, a parser of hostile disks, gets none of the converter's
// environment (S3 keys, credentials).
func TestQemuImgGetsAnEmptyEnvironment(t *testing.T) {
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	r := &Runner{Binary: "env"} // prints its environment
	out, err := r.run(context.Background(), r.light())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(out)), run.ChildEnv(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("qemu-img's environment %q, want %q", got, want)
	}
}
