package qcow2

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/testenv"
)

// BenchmarkUpload stores the qcow2 image of a raw disk in a real MinIO the
// two ways the builder has done it, in the same run: `qemu-img convert -f
// raw -O qcow2 -W` to a file, then blob.Store.PutFile (before); Open and
// blob.Store.Put of the image's stream (now). The disk is laid out like a
// filesystem's after mkfs: 512 MiB, 200 MiB of data in 1 MiB runs between
// holes, 16 MiB of written zeros (a journal). It reports each way's best
// and median time and the ratio before/now (>1: the stream is faster).
func BenchmarkUpload(b *testing.B) {
	dir := b.TempDir()
	s3, stop, err := testenv.StartMinIO(filepath.Join(dir, "minio"))
	if err != nil {
		b.Fatalf("the benchmark needs MinIO: %v", err)
	}
	defer stop()
	store, err := blob.New(s3.BlobConfig())
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const bucket = "bench"
	if err := store.EnsureBucket(ctx, bucket); err != nil {
		b.Fatal(err)
	}
	raw := rawFile(b, dir, 512*mib, benchExtents(), 8)
	qcow := filepath.Join(dir, "converted.qcow2")
	var ours, bare phases
	runOurs := func() {
		syscall.Sync()
		start := time.Now()
		im, err := Open(ctx, raw, Options{})
		if err != nil {
			b.Fatal(err)
		}
		defer im.Close()
		laidOut := time.Now()
		info, err := store.Put(ctx, bucket, "stream.qcow2", im.Reader(), im.Size())
		if err != nil {
			b.Fatal(err)
		}
		ours.add(start, laidOut, info.Size)
	}
	runBare := func() {
		os.Remove(qcow)
		syscall.Sync()
		start := time.Now()
		testenv.Exec(b, "qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-W", raw, qcow)
		converted := time.Now()
		info, err := store.PutFile(ctx, bucket, "converted.qcow2", qcow, nil, nil)
		if err != nil {
			b.Fatal(err)
		}
		bare.add(start, converted, info.Size)
	}
	testenv.Interleave(b, runOurs, runBare)
	o, bb := slices.Min(ours.total), slices.Min(bare.total)
	b.ReportMetric(o.Seconds(), "stream-best-s")
	b.ReportMetric(bb.Seconds(), "convert+put-best-s")
	b.ReportMetric(bb.Seconds()/o.Seconds(), "ratio")
	b.Logf("%d runs each, best (median): stream %v (%v) = open %v + put %v, %d MiB stored; qemu-img convert + PutFile %v (%v) = convert %v + put %v, %d MiB; ratio convert+put/stream %.2f",
		len(ours.total), o, testenv.Median(ours.total), slices.Min(ours.first), slices.Min(ours.put), ours.size>>20,
		bb, testenv.Median(bare.total), slices.Min(bare.first), slices.Min(bare.put), bare.size>>20, bb.Seconds()/o.Seconds())
}

// phases are the times of a benchmark's runs: the whole, the step before
// the upload (Open or qemu-img convert), the upload.
type phases struct {
	total, first, put []time.Duration
	size              int64
}

func (p *phases) add(start, uploading time.Time, size int64) {
	p.total = append(p.total, time.Since(start))
	p.first = append(p.first, uploading.Sub(start))
	p.put = append(p.put, time.Since(uploading))
	p.size = size
}

// benchExtents is the benchmark disk's data: 1 MiB runs every 2 MiB over
// the first 400 MiB, then 16 MiB of zeros.
func benchExtents() []extent {
	var ex []extent
	for off := int64(0); off < 400*mib; off += 2 * mib {
		ex = append(ex, extent{off, mib, false})
	}
	return append(ex, extent{450 * mib, 16 * mib, true})
}

// BenchmarkOpen measures the read that finds allocated zero clusters: Open
// of the benchmark disk with and without it (KeepZeroClusters).
func BenchmarkOpen(b *testing.B) {
	raw := rawFile(b, b.TempDir(), 512*mib, benchExtents(), 8)
	for _, keep := range []bool{false, true} {
		b.Run(fmt.Sprintf("keep-zeros=%v", keep), func(b *testing.B) {
			for b.Loop() {
				im, err := Open(context.Background(), raw, Options{KeepZeroClusters: keep})
				if err != nil {
					b.Fatal(err)
				}
				im.Close()
			}
		})
	}
}
