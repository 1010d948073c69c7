package converter

import (
	"compress/gzip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// A qcow2 whose header declares 1 MiB cannot grow to hundreds once
// decompressed: the fetch stops at the header's allowance, in the fetch
// phase, long before the service's own cap, and names why.
func TestImportStopsAtTheHeadersVirtualSize(t *testing.T) {
	h := newHarness(t, Config{})
	dir := t.TempDir()
	qcow := filepath.Join(dir, "small.qcow2")
	qemuImg(t, "create", "-f", "qcow2", qcow, "1M")
	head, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	bomb := filepath.Join(dir, "bomb.qcow2.gz")
	f, err := os.Create(bomb)
	if err != nil {
		t.Fatal(err)
	}
	zw := gzip.NewWriter(f)
	zw.Write(head)
	zeros := make([]byte, 1<<20)
	for range 256 {
		zw.Write(zeros)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	src := h.upload(bomb, "t-bound/bomb.qcow2.gz")
	dest := testenv.Dest(41, "disk.qcow2")
	h.command("import", schemas.ConverterImport{ImageID: 41, Source: src, Dest: dest})
	var ev schemas.Failure
	h.event("failed", "41", &ev)
	if ev.Phase != string(schemas.ConverterPhaseFetch) || ev.Retryable ||
		!strings.Contains(ev.Error, "exceeds the limit of 65.2 MiB (its qcow2 header declares a virtual size of 1 MiB)") {
		t.Fatalf("failed %+v: want a terminal fetch failure naming the header's size", ev)
	}
	assertNoObject(t, h, dest)
}

func TestInputAllowance(t *testing.T) {
	for v, want := range map[int64]int64{0: 64 << 20, 1 << 20: 1<<20 + 1<<18 + 64<<20, 1 << 40: 1<<40 + 1<<30 + 64<<20} {
		if got := inputAllowance(v); got != want {
			t.Errorf("inputAllowance(%d) = %d, want %d", v, got, want)
		}
	}
}
