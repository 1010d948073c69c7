package flatten

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestSparseWriterKeepsContent writes contents mixing data, aligned and
// unaligned zeros, in writes of many sizes, and checks each file reads
// back the same and that its aligned zero blocks are holes.
func TestSparseWriterKeepsContent(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 40; i++ {
		content := sparseContent(rng)
		path := filepath.Join(t.TempDir(), "f")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		w := &sparseWriter{f: f}
		for p := content; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(3*holeBlock))
			if n, err := w.Write(p[:k]); err != nil || n != k {
				t.Fatalf("write %d bytes: %d, %v", k, n, err)
			}
			p = p[k:]
		}
		if err := w.finish(); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, content) {
			t.Fatalf("content %d: read back %d bytes that differ from the %d written", i, len(got), len(content))
		}
		if allocated, dataBlocks := allocatedBytes(t, path), dataBlockBytes(content); allocated > dataBlocks {
			t.Fatalf("content %d: %d bytes allocated, only %d bytes of blocks hold data", i, allocated, dataBlocks)
		}
	}
}

// sparseContent is up to 64 KiB of runs of random bytes and zeros, some
// runs block-aligned, some not, sometimes ending in zeros.
func sparseContent(rng *rand.Rand) []byte {
	var b []byte
	for len(b) < 64<<10 && rng.IntN(12) != 0 {
		n := rng.IntN(3 * holeBlock)
		if rng.IntN(2) == 0 {
			n = holeBlock * (1 + rng.IntN(4))
		}
		run := make([]byte, n)
		if rng.IntN(2) == 0 {
			for i := range run {
				run[i] = byte(1 + rng.IntN(255))
			}
		}
		b = append(b, run...)
	}
	return b
}

// dataBlockBytes is the bytes of the aligned blocks of b holding a byte
// that is not zero: what a sparse file of b needs allocated at most.
func dataBlockBytes(b []byte) int64 {
	var n int64
	for off := 0; off < len(b); off += holeBlock {
		if !bytes.Equal(b[off:min(len(b), off+holeBlock)], zeroBlock[:min(holeBlock, len(b)-off)]) {
			n += holeBlock
		}
	}
	return n
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
