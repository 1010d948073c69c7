package workdir

import (
	"os"
	"path/filepath"
	"testing"
)

// A worker killed mid-job leaves its work directory; the next one to start
// removes it, and never removes a live worker's directory.
func TestClaimSweepsDeadWorkers(t *testing.T) {
	const prefix = "slipway-test-"
	root := t.TempDir()
	dead := filepath.Join(root, prefix+"dead")
	if err := os.MkdirAll(filepath.Join(dead, "import-3-x"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dead, "import-3-x", "input"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	live, releaseLive, err := Claim(root, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dead); !os.IsNotExist(err) {
		t.Errorf("dead worker's work dir still there: %v", err)
	}
	other, releaseOther, err := Claim(root, prefix)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live); err != nil {
		t.Errorf("a second worker removed the live one's work dir: %v", err)
	}
	releaseOther()
	releaseLive()
	for _, d := range []string{live, other} {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("%s not removed on release", d)
		}
	}
}
