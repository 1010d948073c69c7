package oci_test

import (
	"compress/gzip"
	"context"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// BenchmarkPullLayer pulls a one-layer image, its layer a 100 MiB gzip blob,
// from a registry on loopback into a fresh cache each iteration. Beside the
// wall time it reports the process's CPU time per pull (user and system,
// the in-process registry's serving included): what hashing the compressed
// bytes costs shows there, not in the wall time of two busy cores.
func BenchmarkPullLayer(b *testing.B) {
	const size = 100 << 20
	host := testenv.OCIRegistry(b)
	ref := host + "/bench/pull@" + testenv.Push(b, host+"/bench/pull:1", gzipLayerImage(b, size)).String()
	cacheRoot := b.TempDir()
	var cpu time.Duration
	n := 0
	b.SetBytes(size)
	for b.Loop() {
		cacheDir := filepath.Join(cacheRoot, strconv.Itoa(n))
		start := testenv.ProcessCPU(b)
		img, err := oci.Pull(context.Background(), ref, cacheDir, oci.Options{Guard: loopback})
		if err != nil {
			b.Fatal(err)
		}
		if err := img.Wait(); err != nil {
			b.Fatal(err)
		}
		cpu += testenv.ProcessCPU(b) - start
		n++
		b.StopTimer()
		if err := os.RemoveAll(cacheDir); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Milliseconds())/float64(n), "cpu-ms/op")
}

// gzipLayerImage is an image for this machine's platform whose one layer is
// size random bytes in stored (uncompressed) gzip blocks: a blob of about
// size bytes that costs little to make.
func gzipLayerImage(b *testing.B, size int64) v1.Image {
	b.Helper()
	path := filepath.Join(b.TempDir(), "layer.gz")
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	zw, _ := gzip.NewWriterLevel(f, gzip.NoCompression)
	if _, err := io.Copy(zw, io.LimitReader(rand.NewChaCha8([32]byte{}), size)); err != nil {
		b.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
	l, err := tarball.LayerFromFile(path)
	if err != nil {
		b.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		b.Fatal(err)
	}
	return testenv.ForPlatform(b, img, runtime.GOARCH, v1.Config{})
}
