package cli

import (
	"bytes"
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// An operator's caps hold under `slipway up` as under the converter's own
// binary: a small gzip of zeros may not inflate past SLIPWAY_MAX_INPUT_BYTES.
func TestUpHonoursTheOperatorsCaps(t *testing.T) {
	t.Setenv("SLIPWAY_MAX_INPUT_BYTES", "4M")
	flags, _ := stack(t)
	var gz bytes.Buffer
	w := gzip.NewWriter(&gz)
	if _, err := w.Write(make([]byte, 16<<20)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	zeros := filepath.Join(t.TempDir(), "zeros.raw.gz")
	if err := os.WriteFile(zeros, gz.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	r := slipway(t, flags, "image", "create", "--name", "zeros", "--path", zeros, "--wait")
	if r.code != 1 || !strings.Contains(r.stderr, "decompressed data exceeds the limit of 4") {
		t.Fatalf("import of 16 MiB of zeros under a 4 MiB cap: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
}
