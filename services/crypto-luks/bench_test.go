package cryptoluks

import (
	"context"
	"crypto/rand"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/crypto-luks/luks"
)

// BenchmarkLUKSEncrypt compares what the service runs to encrypt an image
// (luks.Runner.Encrypt: header check of the source, a 0600 secret file,
// qemu-img under prlimit with progress parsing) with a bare `qemu-img
// convert -O luks` of the same file, in the same run, alternating which
// goes first. Both use the same explicit iter-time, so the PBKDF2 benchmark
// qemu-img runs costs the same in each. The source is SLIPWAY_BENCH_BYTES
// (default 1 GiB) of raw disk: random 1 MiB runs with every third one
// zero.
//
//	go test -run '^$' -bench LUKSEncrypt -benchtime 2x ./services/crypto-luks/
func BenchmarkLUKSEncrypt(b *testing.B) {
	testenv.Program(b, "qemu-img", "apt-get install qemu-utils")
	size := int64(1 << 30)
	if v := os.Getenv("SLIPWAY_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n%512 != 0 {
			b.Fatalf("SLIPWAY_BENCH_BYTES=%q: want a positive multiple of 512", v)
		}
		size = n
	}
	dir := b.TempDir()
	src := filepath.Join(dir, "src.raw")
	writeMixed(b, src, size)
	pass, err := luks.NewPassphrase()
	if err != nil {
		b.Fatal(err)
	}
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, pass, 0o600); err != nil {
		b.Fatal(err)
	}
	const iterTime = 100 * time.Millisecond
	r := &luks.Runner{TempDir: dir, IterTime: iterTime}
	dst := filepath.Join(dir, "out.luks")
	ctx := context.Background()

	var ours, bare []time.Duration
	runOurs := func() {
		os.Remove(dst)
		syscall.Sync()
		start := time.Now()
		if err := r.Encrypt(ctx, src, luks.FormatRaw, dst, pass, func(int64, int64) {}); err != nil {
			b.Fatal(err)
		}
		ours = append(ours, time.Since(start))
	}
	runBare := func() {
		os.Remove(dst)
		syscall.Sync()
		start := time.Now()
		out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "luks",
			"--object", "secret,id=sec0,file="+passFile+",format=raw",
			"-o", "key-secret=sec0,iter-time="+strconv.FormatInt(iterTime.Milliseconds(), 10), src, dst).CombinedOutput()
		if err != nil {
			b.Fatalf("bare qemu-img convert: %v\n%s", err, out)
		}
		bare = append(bare, time.Since(start))
	}
	b.ResetTimer()
	testenv.Interleave(b, runOurs, runBare)
	b.StopTimer()
	// Best runs: on shared virtual disks a run is now and then charged for
	// earlier writeback; medians and every run are logged too.
	mbps := func(d time.Duration) float64 { return float64(size) / 1e6 / d.Seconds() }
	o, bb := slices.Min(ours), slices.Min(bare)
	b.ReportMetric(mbps(o), "ours-MB/s")
	b.ReportMetric(mbps(bb), "bare-MB/s")
	b.ReportMetric(mbps(o)/mbps(bb), "ratio")
	b.Logf("%d MiB, %d runs each: ours %.1f MB/s, bare qemu-img %.1f MB/s, ratio %.3f; medians %v / %v; all ours %v, all bare %v",
		size>>20, len(ours), mbps(o), mbps(bb), mbps(o)/mbps(bb), testenv.Median(ours), testenv.Median(bare), ours, bare)
}

// writeMixed writes size bytes: random 1 MiB runs, every third one zeros.
func writeMixed(b *testing.B, path string, size int64) {
	b.Helper()
	testenv.WriteDisk(b, path, size, io.LimitReader(&mixed{}, size))
}

// mixed reads as random 1 MiB runs, every third one zeros.
type mixed struct{ off int64 }

func (m *mixed) Read(p []byte) (int, error) {
	n := min(int64(len(p)), 1<<20-m.off%(1<<20)) // to the end of the run
	if (m.off>>20)%3 == 2 {
		clear(p[:n])
	} else if _, err := rand.Read(p[:n]); err != nil {
		return 0, err
	}
	m.off += n
	return int(n), nil
}
