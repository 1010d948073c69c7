package xz

import (
	"bytes"
	"io"
	"math/rand/v2"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// sample is compressible data with some noise, 2 MiB.
func sample() []byte {
	r := rand.New(rand.NewPCG(1, 2))
	var b bytes.Buffer
	for b.Len() < 2<<20 {
		if r.IntN(4) == 0 {
			b.WriteByte(byte(r.IntN(256)))
		} else {
			b.WriteString("slipway kernel registry ")
		}
	}
	return b.Bytes()
}

// compress runs the real xz.
func compress(t *testing.T, data []byte, args ...string) []byte {
	t.Helper()
	testenv.Program(t, "xz", "make deps")
	cmd := exec.Command("xz", append(args, "-c")...)
	cmd.Stdin = bytes.NewReader(data)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xz %v: %v", args, err)
	}
	return out
}

func decode(data []byte, workers int) ([]byte, error) {
	r, err := NewReader(bytes.NewReader(data), Options{Workers: workers})
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

func TestDecode(t *testing.T) {
	data := sample()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"blocks with sizes, crc64", []string{"-T2", "--block-size=200KiB"}},
		{"blocks with sizes, sha256", []string{"-T2", "--block-size=300KiB", "--check=sha256"}},
		{"one streamed block, crc32", []string{"-T1", "--check=crc32"}},
		{"no check", []string{"-T1", "--check=none"}},
		{"x86 BCJ", []string{"-T1", "--x86", "--lzma2=dict=1MiB"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			xz := compress(t, data, c.args...)
			for _, workers := range []int{1, 3} {
				got, err := decode(xz, workers)
				if err != nil {
					t.Fatalf("workers %d: %v", workers, err)
				}
				if !bytes.Equal(got, data) {
					t.Fatalf("workers %d: %d bytes decoded differ from the %d compressed", workers, len(got), len(data))
				}
			}
		})
	}
}

func TestCorrupt(t *testing.T) {
	data := sample()
	xz := compress(t, data, "-T2", "--block-size=200KiB")
	for _, pos := range []int{len(xz) / 3, len(xz) / 2, len(xz) - 40} {
		bad := append([]byte(nil), xz...)
		bad[pos] ^= 0x20
		for _, workers := range []int{1, 3} {
			got, err := decode(bad, workers)
			if err == nil && bytes.Equal(got, data) {
				continue // a flip in the index, which is not read
			}
			if err == nil {
				t.Errorf("byte %d flipped, workers %d: corrupt data without an error", pos, workers)
			} else if !strings.HasPrefix(err.Error(), "xz:") {
				t.Errorf("error %q does not say xz", err)
			}
		}
	}
	if _, err := decode(xz[:len(xz)/2], 3); err == nil {
		t.Error("half a stream decoded without an error")
	}
	if _, err := decode([]byte("not xz at all"), 1); err == nil {
		t.Error("not xz accepted")
	}
}

// TestCloseEarly: a reader closed before the end leaves no goroutine.
func TestCloseEarly(t *testing.T) {
	xz := compress(t, sample(), "-T2", "--block-size=64KiB")
	before := runtime.NumGoroutine()
	r, err := NewReader(bytes.NewReader(xz), Options{Workers: 2})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(r, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	for deadline := time.Now().Add(5 * time.Second); runtime.NumGoroutine() > before; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines, %d before", runtime.NumGoroutine(), before)
		}
	}
}
