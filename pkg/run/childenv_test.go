package run

import (
	"os/exec"
	"strings"
	"testing"
)

func TestChildEnvCarriesNothingOfOurs(t *testing.T) {
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	cmd := exec.Command("env")
	cmd.Env = ChildEnv("TZ=UTC")
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Fields(string(out))
	want := []string{ChildPath, "LC_ALL=C", "TZ=UTC"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("child environment %q, want %q", got, want)
	}
}
