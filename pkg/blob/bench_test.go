package blob_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/slipway/slipway/pkg/blob"
)

// genReader yields n deterministic pseudo-random bytes without holding them.
type genReader struct {
	rng  *rand.PCG
	left int64
	buf  [8]byte
	off  int // unread bytes of buf start at off; 8 = empty
}

func newGen(n int64) *genReader { return &genReader{rng: rand.NewPCG(42, 4242), left: n, off: 8} }

func (g *genReader) Read(p []byte) (int, error) {
	if g.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	n := 0
	for n < len(p) && g.off < 8 {
		p[n] = g.buf[g.off]
		n, g.off = n+1, g.off+1
	}
	for ; n+8 <= len(p); n += 8 {
		binary.LittleEndian.PutUint64(p[n:], g.rng.Uint64())
	}
	if n < len(p) {
		binary.LittleEndian.PutUint64(g.buf[:], g.rng.Uint64())
		g.off = 0
		for n < len(p) {
			p[n] = g.buf[g.off]
			n, g.off = n+1, g.off+1
		}
	}
	g.left -= int64(n)
	return n, nil
}

func TestGenReaderDeterministic(t *testing.T) {
	a, _ := io.ReadAll(io.LimitReader(newGen(1000), 1000))
	var b []byte
	g := newGen(1000)
	for _, chunk := range []int{3, 5, 1, 13, 977, 10} {
		p := make([]byte, chunk)
		n, _ := g.Read(p)
		b = append(b, p[:n]...)
	}
	if len(a) != 1000 || string(a) != string(b) {
		t.Fatalf("generator depends on read sizes: %d vs %d bytes", len(a), len(b))
	}
}

// benchBytes is how much a benchmark uploads: SLIPWAY_BENCH_BYTES, else 64
// MiB with -short, else def.
func benchBytes(b *testing.B, def int64) int64 {
	if v := os.Getenv("SLIPWAY_BENCH_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			b.Fatalf("SLIPWAY_BENCH_BYTES=%q: want a positive byte count", v)
		}
		return n
	}
	if testing.Short() {
		return 64 << 20
	}
	return def
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux
// clear_refs "5"), so each phase's peak is its own.
func resetPeakRSS() {
	runtime.GC()
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// peakRSS reads VmHWM, the process's peak resident set, in bytes.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatalf("peak RSS: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				b.Fatalf("peak RSS: parse %q: %v", rest, err)
			}
			return kb << 10
		}
	}
	b.Fatal("peak RSS: no VmHWM in /proc/self/status")
	return 0
}

const maxPeakRSS = 256 << 20

// BenchmarkPutStream uploads a generated stream of unknown size through
// Store.Put, then the same bytes through minio-go's PutObject with the size
// known, and reports both rates, their ratio and each phase's peak RSS.
func BenchmarkPutStream(b *testing.B) {
	_, bucket := newStore(b)
	// The default part size, as services use it.
	s, err := blob.New(shared.BlobConfig())
	if err != nil {
		b.Fatal(err)
	}
	n := benchBytes(b, 2<<30)
	ctx := context.Background()
	h := sha256.New()
	if _, err := io.Copy(h, newGen(n)); err != nil {
		b.Fatal(err)
	}
	want := hex.EncodeToString(h.Sum(nil))

	b.SetBytes(n)
	b.ResetTimer()
	var ours time.Duration
	var oursRSS int64
	for i := 0; i < b.N; i++ {
		resetPeakRSS()
		start := time.Now()
		info, err := s.Put(ctx, bucket, "bench/ours", newGen(n), -1, blob.ExpectSHA256(want))
		ours += time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		if info.Size != n {
			b.Fatalf("stored %d bytes, want %d", info.Size, n)
		}
		oursRSS = max(oursRSS, peakRSS(b))
	}
	b.StopTimer()
	oursMBs := float64(n) * float64(b.N) / ours.Seconds() / 1e6

	resetPeakRSS()
	start := time.Now()
	if _, err := s.Client().PutObject(ctx, bucket, "bench/baseline", newGen(n), n, minio.PutObjectOptions{}); err != nil {
		b.Fatal(err)
	}
	baseMBs := float64(n) / time.Since(start).Seconds() / 1e6
	baseRSS := peakRSS(b)

	b.ReportMetric(oursMBs, "MB/s")
	b.ReportMetric(float64(oursRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(baseMBs, "baseline-MB/s")
	b.ReportMetric(float64(baseRSS)/(1<<20), "baseline-peak-RSS-MiB")
	b.ReportMetric(oursMBs/baseMBs, "ratio")
	b.Logf("%d bytes: Put (unknown size) %.1f MB/s, peak RSS %d MiB; minio-go PutObject (known size) %.1f MB/s, peak RSS %d MiB; ratio %.2f",
		n, oursMBs, oursRSS>>20, baseMBs, baseRSS>>20, oursMBs/baseMBs)
	if oursRSS > maxPeakRSS {
		b.Errorf("peak RSS %d MiB during Put exceeds %d MiB", oursRSS>>20, maxPeakRSS>>20)
	}
	_ = s.DeletePrefix(ctx, bucket, "bench/")
}

// BenchmarkPutFile uploads one file (512 MiB unless SLIPWAY_BENCH_BYTES
// says otherwise) through Store.PutFile with 1 part in flight, strictly
// serial as Put was before (the baseline), and with DefaultPartsInFlight,
// in turn in the same run, and reports each one's rate and peak RSS and
// the ratio to the baseline. SLIPWAY_BENCH_PARTS_IN_FLIGHT ("1,2,3,4,6")
// compares other counts, the first being the baseline.
func BenchmarkPutFile(b *testing.B) {
	_, bucket := newStore(b)
	counts := benchInFlight(b)
	stores := make([]*blob.Store, len(counts))
	for i, k := range counts {
		cfg := shared.BlobConfig() // the default part size, as services use it
		cfg.PartsInFlight = k
		s, err := blob.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		stores[i] = s
	}
	n := benchBytes(b, 512<<20)
	path, want := writeBenchFile(b, n)
	ctx := context.Background()

	took := make([]time.Duration, len(counts))
	rss := make([]int64, len(counts))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j, s := range stores {
			resetPeakRSS()
			start := time.Now()
			info, err := s.PutFile(ctx, bucket, fmt.Sprintf("bench/file-%d", counts[j]), path, nil, nil, blob.ExpectSHA256(want))
			took[j] += time.Since(start)
			if err != nil {
				b.Fatal(err)
			}
			if info.Size != n {
				b.Fatalf("stored %d bytes, want %d", info.Size, n)
			}
			rss[j] = max(rss[j], peakRSS(b))
		}
	}
	b.StopTimer()
	var report []string
	for j, k := range counts {
		mbs := float64(n) * float64(b.N) / took[j].Seconds() / 1e6
		ratio := took[0].Seconds() / took[j].Seconds()
		b.ReportMetric(mbs, fmt.Sprintf("MB/s-k%d", k))
		b.ReportMetric(float64(rss[j])/(1<<20), fmt.Sprintf("peak-RSS-MiB-k%d", k))
		if j > 0 {
			b.ReportMetric(ratio, fmt.Sprintf("ratio-k%d", k))
		}
		report = append(report, fmt.Sprintf("%d in flight %.1f MB/s (%.2fx), peak RSS %d MiB", k, mbs, ratio, rss[j]>>20))
		if rss[j] > maxPeakRSS {
			b.Errorf("peak RSS %d MiB with %d parts in flight exceeds %d MiB", rss[j]>>20, k, maxPeakRSS>>20)
		}
	}
	b.Logf("PutFile of %d bytes: %s", n, strings.Join(report, "; "))
	_ = stores[0].DeletePrefix(ctx, bucket, "bench/")
}

// benchInFlight is the parts-in-flight counts BenchmarkPutFile compares.
func benchInFlight(b *testing.B) []int {
	v := os.Getenv("SLIPWAY_BENCH_PARTS_IN_FLIGHT")
	if v == "" {
		return []int{1, blob.DefaultPartsInFlight}
	}
	var counts []int
	for f := range strings.SplitSeq(v, ",") {
		k, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || k < 1 {
			b.Fatalf("SLIPWAY_BENCH_PARTS_IN_FLIGHT=%q: want counts of 1 or more, comma-separated", v)
		}
		counts = append(counts, k)
	}
	return counts
}

// writeBenchFile writes n generated bytes to a file and returns its path
// and SHA-256.
func writeBenchFile(b *testing.B, n int64) (string, string) {
	path := filepath.Join(b.TempDir(), "disk.raw")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, h), newGen(n))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.Fatal(err)
	}
	return path, hex.EncodeToString(h.Sum(nil))
}
