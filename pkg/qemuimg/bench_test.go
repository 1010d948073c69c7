package qemuimg

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/diskspace"
	"github.com/slipway/slipway/pkg/testenv"

	"github.com/slipway/slipway/pkg/inspect"
)

// BenchmarkConvert compares what the service does (inspect.InspectFile, then
// Runner.Convert, which adds a qemu-img info and runs under prlimit and
// nice) with a bare `qemu-img convert` of the same image in the same run.
// The image size comes from SLIPWAY_BENCH_BYTES (default 2 GiB): half zeros,
// half pseudo-random data, in alternating 1 MiB runs.
//
//	SLIPWAY_BENCH_BYTES=268435456 go test -run '^$' -bench Convert -benchtime 2x ./qemuimg
func BenchmarkConvert(b *testing.B) {
	size := int64(2 << 30)
	if v := os.Getenv("SLIPWAY_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("SLIPWAY_BENCH_BYTES=%q: want a positive byte count", v)
		}
		size = n
	}
	dir := b.TempDir()
	if err := diskspace.Ensure(dir, 3*size); err != nil {
		b.Fatal(err)
	}
	src := filepath.Join(dir, "src.raw")
	mixedRaw(b, src, size)

	for _, c := range []struct {
		name string
		opts ConvertOptions
		bare []string
	}{
		{"raw-qcow2", ConvertOptions{}, nil},
		{"raw-zstd-qcow2", ConvertOptions{Compress: true}, []string{"-o", "compression_type=zstd", "-c"}},
	} {
		b.Run(c.name, func(b *testing.B) {
			benchConvert(b, src, dir, size, c.opts, c.bare)
		})
	}
}

func benchConvert(b *testing.B, src, dir string, size int64, opts ConvertOptions, bareOpts []string) {
	ctx := context.Background()
	var r Runner
	dst := filepath.Join(dir, "out.qcow2")
	var ours, bare []time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	runOurs := func() {
		os.Remove(dst)
		settle()
		start := time.Now()
		rep, err := inspect.InspectFile(src, inspect.Limits{MaxVirtualSize: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Convert(ctx, src, rep.Format, dst, inspect.QCOW2, opts); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
	}
	runBare := func() {
		os.Remove(dst)
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2", "-W"}, bareOpts...)
		settle()
		start := time.Now()
		testenv.Exec(b, "qemu-img", append(args, src, dst)...)
		bare = append(bare, time.Since(start))
	}
	// Alternate which runs first so page-cache warmth favours neither.
	testenv.Interleave(b, runOurs, runBare)
	// On a virtual disk a run is now and then charged seconds of earlier
	// writeback (seen here: the first conversion of each pair taking twice
	// as long, whichever tool it was), so compare the best runs; medians
	// and every run are printed too.
	o, bb := slices.Min(ours), slices.Min(bare)
	b.ReportMetric(o.Seconds(), "ours-best-s")
	b.ReportMetric(bb.Seconds(), "bare-best-s")
	b.ReportMetric(100*(o.Seconds()-bb.Seconds())/bb.Seconds(), "overhead-%")
	b.Logf("%d runs each: best ours %v, bare qemu-img %v; medians %v, %v; all ours %v, all bare %v",
		len(ours), o, bb, testenv.Median(ours), testenv.Median(bare), ours, bare)
}

// settle flushes the previous run's dirty pages first: otherwise the kernel
// writes a gigabyte back during whichever run comes next, and that run is
// charged for it (seen here: the same conversion taking 0.3 s or 2.9 s).
func settle() { syscall.Sync() }
