package qemuimg

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/slipway/slipway/services/converter/inspect"
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
	if err := EnsureFree(dir, 3*size); err != nil {
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
	var ours, bare time.Duration
	b.SetBytes(size)
	b.ResetTimer()
	runOurs := func() {
		os.Remove(dst)
		start := time.Now()
		rep, err := inspect.InspectFile(src, inspect.Limits{MaxVirtualSize: -1})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.Convert(ctx, src, rep.Format, dst, inspect.QCOW2, opts); err != nil {
			b.Fatal(err)
		}
		ours += time.Since(start)
	}
	runBare := func() {
		os.Remove(dst)
		args := append([]string{"convert", "-f", "raw", "-O", "qcow2", "-W"}, bareOpts...)
		start := time.Now()
		if out, err := exec.Command("qemu-img", append(args, src, dst)...).CombinedOutput(); err != nil {
			b.Fatalf("bare qemu-img convert: %v\n%s", err, out)
		}
		bare += time.Since(start)
	}
	// Alternate which runs first so page-cache warmth favours neither.
	i := 0
	for b.Loop() {
		if i%2 == 0 {
			runOurs()
			runBare()
		} else {
			runBare()
			runOurs()
		}
		i++
	}
	n := float64(b.N)
	b.ReportMetric(ours.Seconds()/n, "ours-s/op")
	b.ReportMetric(bare.Seconds()/n, "bare-s/op")
	b.ReportMetric(100*(ours.Seconds()-bare.Seconds())/bare.Seconds(), "overhead-%")
}
