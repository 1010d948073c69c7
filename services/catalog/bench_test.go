package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
)

// BenchmarkPermissionCheck measures what the catalog adds to every
// command for identity: authorize, the one check the handlers share
// (who sent it, from the users' bucket, and their rights on the image it
// names, from the images' bucket), on a real NATS key-value store. The
// server's own cost (JWT permissions on every publish) is
// pkg/bus's BenchmarkAuthenticatedRoundTrip; the two add up to what
// identity costs a command → event round trip.
func BenchmarkPermissionCheck(b *testing.B) {
	h := newHarness(b)
	alice := h.newUser("alice", "")
	img, err := answerFrom[schemas.Image](h, alice, schemas.CommandCatalogImageCreate,
		schemas.ImageCreate{Name: "mine", SizeMiB: 1}, schemas.EventCatalogImageCreated)
	if err != nil {
		b.Fatal(err)
	}
	data, _ := json.Marshal(schemas.ImageRename{ID: img.ID, Name: "renamed"})
	cases := []struct{ name, sender string }{
		{"owner", "alice"},       // a user: her record, then the image's bits
		{"oneadmin", "oneadmin"}, // the administrators' group passes, after the same reads
		{"service", ServiceName}, // a service on its own: no user to read
	}
	for _, c := range cases {
		m := &bus.Msg{Service: ServiceName, Name: schemas.CommandCatalogImageRename, Sender: c.sender, Data: data}
		lat := make([]time.Duration, 0, benchChecks)
		for range benchChecks + benchChecks/10 {
			t0 := time.Now()
			if _, err := h.svc.authorize(context.Background(), m); err != nil {
				b.Fatalf("%s: %v", c.name, err)
			}
			lat = append(lat, time.Since(t0))
		}
		lat = lat[benchChecks/10:] // the first ones warm the connection
		slices.Sort(lat)
		p50, p99 := lat[len(lat)/2], lat[len(lat)*99/100]
		b.ReportMetric(float64(p50.Microseconds()), c.name+"-p50-µs")
		b.ReportMetric(float64(p99.Microseconds()), c.name+"-p99-µs")
		b.Logf("authorize as %s: p50 %s p99 %s (%d checks)", c.name, p50, p99, len(lat))
	}
}

// benchChecks is how many checks each case measures, whatever b.N is.
const benchChecks = 1000

// BenchmarkImageClone measures image-clone of a 2 GiB image (command to
// READY: the server-side copy, then the commit's SHA-256 read-back when
// digests are verified, as tests and `slipway up` configure it; and with
// the size check only) against the plain server-side copy an S3 client
// makes (minio-go's CopyObject, what `mc cp` does within one server), in
// the same run, on the same MinIO. SLIPWAY_BENCH_CLONE_MIB changes the size.
func BenchmarkImageClone(b *testing.B) {
	size := int64(2048) << 20
	if v := os.Getenv("SLIPWAY_BENCH_CLONE_MIB"); v != "" {
		mib, err := strconv.ParseInt(v, 10, 64)
		if err != nil || mib <= 0 {
			b.Fatalf("SLIPWAY_BENCH_CLONE_MIB=%q: want a positive number of MiB", v)
		}
		size = mib << 20
	}
	h := newHarness(b)
	// The harness's catalog runs for two minutes; gigabytes take longer.
	h.stop()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	h.ctx = ctx
	h.start()
	src := h.readyStreamed("big", size)
	bucket, key, _ := blob.ParseURL(src.Source)
	runs := max(b.N, 3)
	var verified, sizeOnly, bare []time.Duration
	for i := range runs {
		for _, verify := range []bool{true, false} {
			h.svc.cfg.VerifyDigest = verify
			t0 := time.Now()
			m, err := h.cli.Call(ctx, ServiceName, schemas.CommandCatalogImageClone,
				schemas.ImageClone{ID: src.ID, Name: fmt.Sprintf("c%d-%v", i, verify)}, []string{schemas.EventCatalogImageCreated})
			if err != nil {
				b.Fatalf("clone %d (verify %v) after %s: %v", i, verify, time.Since(t0), err)
			}
			var img schemas.Image
			mustJSON(b, m.Data, &img)
			h.settled(img.ID, 20*time.Minute)
			d := time.Since(t0)
			b.Logf("clone %d (verify %v): %s", i, verify, d)
			if verify {
				verified = append(verified, d)
			} else {
				sizeOnly = append(sizeOnly, d)
			}
			if err := h.svc.deleteBlobs(ctx, h.mustShowPtr(img.ID)); err != nil {
				b.Fatal(err)
			}
		}
		t0 := time.Now()
		dst := minio.CopyDestOptions{Bucket: bucket, Object: fmt.Sprintf("bench/bare-%d", i)}
		if _, err := h.blobs.Client().CopyObject(ctx, dst, minio.CopySrcOptions{Bucket: bucket, Object: key}); err != nil {
			b.Fatal(err)
		}
		bare = append(bare, time.Since(t0))
		b.Logf("CopyObject %d: %s", i, bare[i])
		if err := h.blobs.Delete(ctx, bucket, dst.Object); err != nil {
			b.Fatal(err)
		}
	}
	med := func(d []time.Duration) time.Duration { slices.Sort(d); return d[len(d)/2] }
	v, s, c := med(verified), med(sizeOnly), med(bare)
	b.ReportMetric(v.Seconds(), "clone-verified-s")
	b.ReportMetric(s.Seconds(), "clone-size-only-s")
	b.ReportMetric(c.Seconds(), "copyobject-s")
	b.ReportMetric(float64(v)/float64(c), "x-copyobject-verified")
	b.ReportMetric(float64(s)/float64(c), "x-copyobject-size-only")
	b.Logf("%d MiB, %d runs each (medians): clone with SHA-256 check %s, clone with size check %s, bare CopyObject %s; ratio %.2f verified, %.2f size only; all %v / %v / %v",
		size>>20, runs, v, s, c, float64(v)/float64(c), float64(s)/float64(c), verified, sizeOnly, bare)
}

// readyStreamed imports an image of size pseudo-random bytes, playing the
// converter with a stream (nothing of that size is held in memory).
func (h *harness) readyStreamed(name string, size int64) schemas.Image {
	h.t.Helper()
	img := h.create(schemas.ImageCreate{Name: name, SizeMiB: size >> 20})
	cmd, c := h.convertCommand(img.ID)
	bucket, key, err := blob.ParseURL(c.Dest)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := h.blobs.Put(h.ctx, bucket, key, io.LimitReader(rand.NewChaCha8([32]byte{42}), size), size)
	if err != nil {
		h.t.Fatal(err)
	}
	h.converterEvent(cmd, "converted", img.ID, schemas.ConverterConverted{ImageID: img.ID, Dest: c.Dest, Format: schemas.DiskFormatRaw,
		VirtualSize: size, Size: info.Size, SHA256: info.SHA256, DetectedFormat: schemas.DiskFormatRaw})
	h.settled(img.ID, 20*time.Minute)
	return h.mustShow(img.ID)
}

// settled polls image id until it is READY (every 20ms, within limit); an
// ERROR fails the benchmark. The recorder's waits are too short for
// gigabytes.
func (h *harness) settled(id int64, limit time.Duration) {
	h.t.Helper()
	for deadline := time.Now().Add(limit); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		switch img := h.mustShow(id); State(img.State) {
		case StateReady:
			return
		case StateError:
			h.t.Fatalf("image %d: ERROR %s", id, img.Error)
		}
	}
	h.t.Fatalf("image %d not READY within %s", id, limit)
}

func (h *harness) mustShowPtr(id int64) *schemas.Image {
	img := h.mustShow(id)
	return &img
}
