package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/testenv"
)

// mixedRaw writes a raw image of size bytes: alternating 1 MiB runs of
// zeros and pseudo-random data, so qcow2 output has both to handle.
func mixedRaw(t testing.TB, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := rand.New(rand.NewPCG(7, 11))
	chunk := make([]byte, 1<<20)
	for off := int64(0); off < size; off += int64(len(chunk)) {
		n := min(int64(len(chunk)), size-off)
		if (off>>20)%2 == 0 {
			continue // leave a hole of zeros
		}
		for i := 0; i < int(n); i += 8 {
			le := r.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				chunk[i+j] = byte(le >> (8 * j))
			}
		}
		if _, err := f.WriteAt(chunk[:n], off); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// rawSource returns a new directory holding src.raw, a mixedRaw image of
// size bytes, and src.raw's path.
func rawSource(t testing.TB, size int64) (dir, src string) {
	t.Helper()
	dir = t.TempDir()
	src = filepath.Join(dir, "src.raw")
	mixedRaw(t, src, size)
	return dir, src
}

func TestConvertRoundTrips(t *testing.T) {
	ctx := context.Background()
	dir, src := rawSource(t, 16<<20)
	want := testenv.FileSHA256(t, src)
	var r Runner

	qcow := filepath.Join(dir, "a.qcow2")
	if err := r.Convert(ctx, src, inspect.Raw, qcow, inspect.QCOW2, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, to := range []inspect.Format{inspect.VMDK, inspect.VDI, inspect.VHD, inspect.VHDX, inspect.QCOW2} {
		t.Run(string(to), func(t *testing.T) {
			mid := filepath.Join(dir, "mid."+string(to))
			if err := r.Convert(ctx, qcow, inspect.QCOW2, mid, to, ConvertOptions{}); err != nil {
				t.Fatal(err)
			}
			rep, err := inspect.InspectFile(mid, inspect.Limits{})
			if err != nil || rep.Format != to || rep.VirtualSize != 16<<20 {
				t.Fatalf("inspect %s: %+v, %v", mid, rep, err)
			}
			if err := r.Check(ctx, mid, to); err != nil {
				t.Fatalf("check: %v", err)
			}
			back := filepath.Join(dir, "back-"+string(to)+".raw")
			if err := r.Convert(ctx, mid, to, back, inspect.Raw, ConvertOptions{}); err != nil {
				t.Fatal(err)
			}
			if got := testenv.FileSHA256(t, back); got != want {
				t.Fatalf("raw -> qcow2 -> %s -> raw changed the content", to)
			}
		})
	}
}

func TestConvertZstdAndProgress(t *testing.T) {
	ctx := context.Background()
	dir, src := rawSource(t, 32<<20)
	var r Runner
	var calls atomic.Int64
	var last atomic.Int64
	dst := filepath.Join(dir, "z.qcow2")
	err := r.Convert(ctx, src, inspect.Raw, dst, inspect.QCOW2, ConvertOptions{
		Compress: true,
		Progress: func(done, total int64) {
			if total != 32<<20 || done < 0 || done > total {
				t.Errorf("progress(%d, %d) out of range", done, total)
			}
			calls.Add(1)
			last.Store(done)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() < 2 || last.Load() != 32<<20 {
		t.Fatalf("progress called %d times, last %d; want several ending at %d", calls.Load(), last.Load(), 32<<20)
	}
	info, err := r.Info(ctx, dst, inspect.QCOW2)
	if err != nil {
		t.Fatal(err)
	}
	if info.CompressionType != "zstd" || info.VirtualSize != 32<<20 {
		t.Fatalf("info = %+v, want zstd and 32 MiB", info)
	}
	cmp := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", src, dst)
	if out, err := cmp.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img compare: %v\n%s", err, out)
	}
	zlib := filepath.Join(dir, "zl.qcow2")
	if err := r.Convert(ctx, src, inspect.Raw, zlib, inspect.QCOW2, ConvertOptions{Compress: true, CompressionType: "zlib"}); err != nil {
		t.Fatal(err)
	}
	if info, err := r.Info(ctx, zlib, inspect.QCOW2); err != nil || info.CompressionType != "zlib" {
		t.Fatalf("zlib info = %+v, %v", info, err)
	}
}

func TestMeasureAndCreate(t *testing.T) {
	ctx := context.Background()
	dir, src := rawSource(t, 16<<20)
	var r Runner
	q, err := r.Measure(ctx, src, inspect.Raw, inspect.QCOW2, ConvertOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Half the image is data: qcow2 needs at least that and less than all.
	if q < 8<<20 || q > 16<<20+(1<<20) {
		t.Fatalf("measure qcow2 = %d", q)
	}
	v, err := r.Measure(ctx, src, inspect.Raw, inspect.VMDK, ConvertOptions{})
	if err != nil || v <= q {
		t.Fatalf("measure vmdk = %d, %v; want more than qcow2's %d", v, err, q)
	}
	blank := filepath.Join(dir, "blank.qcow2")
	if err := r.Create(ctx, blank, inspect.QCOW2, 1<<30); err != nil {
		t.Fatal(err)
	}
	if info, err := r.Info(ctx, blank, inspect.QCOW2); err != nil || info.VirtualSize != 1<<30 {
		t.Fatalf("blank info = %+v, %v", info, err)
	}
}

func TestInfoCrossChecks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	var r Runner
	backed := filepath.Join(dir, "backed.qcow2")
	testenv.Exec(t, "qemu-img", "create", "-f", "qcow2", "-b", "/etc/passwd", "-F", "raw", backed)
	if _, err := r.Info(ctx, backed, inspect.QCOW2); !errors.Is(err, ErrUnsafe) || !strings.Contains(err.Error(), "/etc/passwd") {
		t.Fatalf("Info on a backed qcow2 = %v, want ErrUnsafe naming /etc/passwd", err)
	}
	// Asking for raw reads a qcow2 as data: qemu agrees, and the format
	// seen is raw, so only inspect can tell; asking for qcow2 on raw data
	// fails inside qemu-img with its message.
	src := filepath.Join(dir, "src.raw")
	mixedRaw(t, src, 1<<20)
	_, err := r.Info(ctx, src, inspect.QCOW2)
	if err == nil || !strings.Contains(err.Error(), "qemu-img info") || !strings.Contains(err.Error(), "qcow2") {
		t.Fatalf("Info(raw as qcow2) = %v, want qemu-img's complaint", err)
	}
}

func TestPathsRefused(t *testing.T) {
	ctx := context.Background()
	var r Runner
	for _, p := range []string{
		`json:{"file":{"driver":"file","filename":"/etc/passwd"}}`,
		"nbd://example/disk", "nbd:localhost:10809", "relative.qcow2", "/tmp/../etc/passwd", "/tmp/a:b", "",
	} {
		if _, err := r.Info(ctx, p, inspect.Raw); !errors.Is(err, ErrPath) {
			t.Errorf("Info(%q) = %v, want ErrPath", p, err)
		}
		if err := r.Convert(ctx, "/tmp/x.raw", inspect.Raw, p, inspect.QCOW2, ConvertOptions{}); !errors.Is(err, ErrPath) {
			t.Errorf("Convert(dst %q) = %v, want ErrPath", p, err)
		}
	}
	if _, err := r.Info(ctx, `json:{"file.filename":"/etc/passwd"}`, inspect.Raw); err == nil || !strings.Contains(err.Error(), "json: pseudo-filename") {
		t.Fatalf("json: path error = %v", err)
	}
}

func TestUnsupportedRequests(t *testing.T) {
	ctx := context.Background()
	dir, src := rawSource(t, 1<<20)
	var r Runner
	for name, err := range map[string]error{
		"luks out":   r.Convert(ctx, src, inspect.Raw, filepath.Join(dir, "o.luks"), inspect.LUKS, ConvertOptions{}),
		"luks in":    r.Convert(ctx, src, inspect.LUKS, filepath.Join(dir, "o.raw"), inspect.Raw, ConvertOptions{}),
		"vmdk -c":    r.Convert(ctx, src, inspect.Raw, filepath.Join(dir, "o.vmdk"), inspect.VMDK, ConvertOptions{Compress: true}),
		"bad codec":  r.Convert(ctx, src, inspect.Raw, filepath.Join(dir, "o.qcow2"), inspect.QCOW2, ConvertOptions{Compress: true, CompressionType: "lz4"}),
		"qed create": r.Create(ctx, filepath.Join(dir, "o.qed"), inspect.QED, 1<<20),
	} {
		if err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func TestISOInputReadAsRaw(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	iso := filepath.Join(dir, "a.iso")
	mixedRaw(t, iso, 2<<20)
	var r Runner
	dst := filepath.Join(dir, "iso.qcow2")
	if err := r.Convert(ctx, iso, inspect.ISO, dst, inspect.QCOW2, ConvertOptions{}); err != nil {
		t.Fatal(err)
	}
	if info, err := r.Info(ctx, dst, inspect.QCOW2); err != nil || info.VirtualSize != 2<<20 {
		t.Fatalf("info = %+v, %v", info, err)
	}
}

func TestCancelKillsQemuImg(t *testing.T) {
	dir, src := rawSource(t, 256<<20)
	var r Runner
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{}, 1)
	done := make(chan error, 1)
	go func() {
		done <- r.Convert(ctx, src, inspect.Raw, filepath.Join(dir, "z.qcow2"), inspect.QCOW2, ConvertOptions{
			Compress: true, CompressionType: "zlib",
			Progress: func(int64, int64) {
				select {
				case started <- struct{}{}:
				default:
				}
			},
		})
	}()
	select {
	case <-started:
	case err := <-done:
		t.Fatalf("convert finished before it could be cancelled: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no progress within 30 s")
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Convert after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Convert did not return after cancel")
	}
	// No qemu-img may still be writing our output.
	out, _ := exec.Command("pgrep", "-f", "qemu-img convert .*"+regexpQuote(dir)).Output()
	if len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("qemu-img still running after cancel: pids %s", out)
	}
}

func regexpQuote(s string) string {
	return strings.NewReplacer(".", `\.`, "+", `\+`, "*", `\*`, "?", `\?`).Replace(s)
}

func TestLimits(t *testing.T) {
	ctx := context.Background()
	_, src := rawSource(t, 1<<20)
	r := Runner{AddressSpace: 8 << 20}
	_, err := r.Info(ctx, src, inspect.Raw)
	if err == nil || !strings.Contains(err.Error(), "address-space limit of 8 MiB") {
		t.Fatalf("Info under 8 MiB of address space = %v, want a clear memory error", err)
	}
	ok := Runner{}
	if _, err := ok.Info(ctx, src, inspect.Raw); err != nil {
		t.Fatalf("Info with default limits: %v", err)
	}
}
