package flatten

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/klauspost/compress/gzip"

	"github.com/slipway/slipway/pkg/netguard"
	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// benchLayerBytes is the uncompressed size of BenchmarkFlattenGzip's layer.
const benchLayerBytes = 96 << 20

// BenchmarkFlattenGzip flattens one gzip layer of 96 MiB of files, half
// random and half text, pulled through pkg/oci (so decompressed by its
// gzip reader and checked against its diff_id, hashed on a goroutine of
// its own, as in a build), alternately
// with the layer read on the flattener's goroutine (serial) and read ahead
// on a goroutine of its own (pipeline). It reports both and their ratio,
// serial time over pipeline time: above 1 the pipeline is faster. The CPU
// time of the process per run is logged too: the pipeline's overhead.
func BenchmarkFlattenGzip(b *testing.B) {
	layer, raw := pulledGzipLayer(b)
	// Alone, the two sides: the pipeline's best is the slower of them.
	st := stageTimes(b, layer, raw, filepath.Join(b.TempDir(), "stage"))
	b.Logf("alone, best of 3: reading the layer %v (of which gunzip %v), flattening its plain tar %v", st.read, st.gunzip, st.write)
	// Every run flattens into a directory of its own, all removed at the
	// end: freeing blocks between runs (ext4 mounted with discard) slows
	// the next run's file creations down.
	base := b.TempDir()
	var serial, pipeline benchRuns
	runs := 0
	run := func(readAhead bool, into *benchRuns) func() {
		return func() {
			dst := filepath.Join(base, fmt.Sprintf("root%d", runs))
			runs++
			syscall.Sync() // earlier runs' writeback is charged to nobody
			cpu0, start := testenv.ProcessCPU(b), time.Now()
			if _, err := flatten(context.Background(), []Layer{layer}, dst, Policy{}, readAhead); err != nil {
				b.Fatal(err)
			}
			into.wall = append(into.wall, time.Since(start))
			into.cpu = append(into.cpu, testenv.ProcessCPU(b)-cpu0)
		}
	}
	b.ResetTimer()
	testenv.Interleave(b, run(true, &pipeline), run(false, &serial))
	b.StopTimer()
	// Best runs, as other helpers on the machine slow runs down but never
	// speed them up; medians and every run are logged too.
	s, p := slices.Min(serial.wall), slices.Min(pipeline.wall)
	mbps := func(d time.Duration) float64 { return float64(benchLayerBytes) / 1e6 / d.Seconds() }
	b.ReportMetric(mbps(s), "serial-MB/s")
	b.ReportMetric(mbps(p), "pipeline-MB/s")
	b.ReportMetric(s.Seconds()/p.Seconds(), "ratio")
	ms, mp := testenv.Median(serial.wall), testenv.Median(pipeline.wall)
	b.Logf("%d MiB, GOMAXPROCS %d, %d runs each: best serial %v, pipeline %v, ratio %.3f; medians %v / %v, ratio %.3f; median CPU serial %v, pipeline %v",
		benchLayerBytes>>20, runtime.GOMAXPROCS(0), len(serial.wall), s, p, s.Seconds()/p.Seconds(),
		ms, mp, ms.Seconds()/mp.Seconds(), testenv.Median(serial.cpu), testenv.Median(pipeline.cpu))
	b.Logf("all serial %v, all pipeline %v", serial.wall, pipeline.wall)
	pairs := make([]float64, len(serial.wall))
	for i := range pairs {
		pairs[i] = serial.wall[i].Seconds() / pipeline.wall[i].Seconds()
	}
	slices.Sort(pairs)
	b.ReportMetric(pairs[len(pairs)/2], "median-pair-ratio")
}

// benchRuns are the wall and CPU times of a benchmark's runs.
type benchRuns struct{ wall, cpu []time.Duration }

// stages are the times of a flatten's parts, each alone on one goroutine.
type stages struct {
	read   time.Duration // reading the layer to its end (gunzip, diff_id)
	gunzip time.Duration // gunzipping its blob
	write  time.Duration // flattening its uncompressed tar from memory
}

// stageTimes times the parts of flattening l, whose uncompressed tar is
// raw, best of 3.
func stageTimes(b *testing.B, l Layer, raw []byte, dir string) stages {
	st := stages{time.Hour, time.Hour, time.Hour}
	timed := func(d *time.Duration, f func() error) {
		start := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		*d = min(*d, time.Since(start))
	}
	drain := func(open func() (io.ReadCloser, error)) func() error {
		return func() error {
			rc, err := open()
			if err != nil {
				return err
			}
			defer rc.Close()
			_, err = io.Copy(io.Discard, rc)
			return err
		}
	}
	blob := l.(v1Layer).l
	for i := range 3 {
		timed(&st.read, drain(l.Uncompressed))
		timed(&st.gunzip, drain(func() (io.ReadCloser, error) {
			rc, err := blob.Compressed()
			if err != nil {
				return nil, err
			}
			zr, err := gzip.NewReader(rc)
			return struct {
				io.Reader
				io.Closer
			}{zr, rc}, err
		}))
		dst := filepath.Join(dir, strconv.Itoa(i))
		syscall.Sync()
		timed(&st.write, func() error {
			_, err := flatten(context.Background(), []Layer{bytesLayer(raw)}, dst, Policy{}, false)
			return err
		})
	}
	return st
}

// pulledGzipLayer pushes an image of one mixed gzip layer to an in-process
// registry and pulls it into a cache, returning the cached layer and its
// uncompressed tar.
func pulledGzipLayer(b *testing.B) (Layer, []byte) {
	raw := mixedTar(b, benchLayerBytes)
	gz := gzipped(b, raw)
	b.Logf("layer: %d MiB of tar, %d MiB gzipped", len(raw)>>20, len(gz)>>20)
	return pulledLayer(b, gz, nil), raw
}

// pulledLayer pushes an image of the one gzipped layer gz, with the
// config's diff_id replaced by diffID unless it is nil, to an in-process
// registry and pulls it with pkg/oci into a cache, returning the cached
// layer as a build reads it.
func pulledLayer(tb testing.TB, gz []byte, diffID *v1.Hash) Layer {
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(gz)), nil })
	if err != nil {
		tb.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		tb.Fatal(err)
	}
	img = testenv.ForPlatform(tb, img, runtime.GOARCH, v1.Config{})
	if diffID != nil {
		cf, err := img.ConfigFile()
		if err != nil {
			tb.Fatal(err)
		}
		cf = cf.DeepCopy()
		cf.RootFS.DiffIDs[0] = *diffID
		if img, err = mutate.ConfigFile(img, cf); err != nil {
			tb.Fatal(err)
		}
	}
	repo := testenv.OCIRegistry(tb) + "/flatten/test"
	d := testenv.Push(tb, repo+":latest", img)
	pulled, err := oci.Pull(context.Background(), repo+"@"+d.String(), tb.TempDir(),
		oci.Options{Guard: netguard.MustParse("127.0.0.0/8,::1/128")})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pulled.Close() })
	if err := pulled.Wait(); err != nil {
		tb.Fatal(err)
	}
	layers, err := pulled.Layers()
	if err != nil {
		tb.Fatal(err)
	}
	return FromV1(layers[0])
}

// mixedTar is a tar of about size bytes of files from 1 KiB to 256 KiB in
// directories of 100, alternately random bytes and text.
func mixedTar(b *testing.B, size int64) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	body := make([]byte, 256<<10)
	for i := 0; int64(buf.Len()) < size; i++ {
		n := 1<<10 + rng.IntN(255<<10)
		if i%2 == 0 {
			fillRandom(rng, body[:n])
		} else {
			fillText(rng, body[:n])
		}
		name := fmt.Sprintf("d%03d/f%05d", i/100, i)
		if i%100 == 0 {
			writeEntry(b, tw, &tar.Header{Name: name[:4] + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
		}
		writeEntry(b, tw, &tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(n)}, body[:n])
	}
	if err := tw.Close(); err != nil {
		b.Fatal(err)
	}
	return buf.Bytes()
}

func writeEntry(b *testing.B, tw *tar.Writer, h *tar.Header, body []byte) {
	h.ModTime = time.Unix(mtime, 0)
	if err := tw.WriteHeader(h); err != nil {
		b.Fatal(err)
	}
	if _, err := tw.Write(body); err != nil {
		b.Fatal(err)
	}
}

func fillRandom(rng *rand.Rand, p []byte) {
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
}

// words make fillText's text compress about as well as source code does.
var words = []string{"the", "func", "return", "err", "nil", "if", "layer", "flatten", "buffer",
	"stream", "context", "package", "import", "struct", "int64", "byte", "for", "range", "\n", "\t", "{", "}", "(", ")"}

func fillText(rng *rand.Rand, p []byte) {
	for i := 0; i < len(p); {
		i += copy(p[i:], words[rng.IntN(len(words))])
		if i < len(p) {
			p[i] = ' '
			i++
		}
	}
}
