package oci_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// TestDistributionRegistry runs the main paths against the real registry.
func TestDistributionRegistry(t *testing.T) {
	ctx := context.Background()
	host := testenv.Registry(t)

	amd := busyboxImage(t, "linux/amd64")
	arm := busyboxImage(t, "linux/arm64")
	push(t, host+"/slipway/busybox:musl", amd)
	idx := pushIndex(t, host+"/slipway/multi:1", map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm})

	res, err := oci.Resolve(ctx, host+"/slipway/busybox:musl", oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != digestOf(t, amd) || res.Kind != oci.KindContainer {
		t.Fatalf("resolved %+v", res)
	}
	for platform, want := range map[string]v1.Image{"linux/amd64": amd, "linux/arm64": arm} {
		r, err := oci.Resolve(ctx, host+"/slipway/multi:1", oci.Options{Guard: loopback, Platform: platform})
		if err != nil || r.Digest != digestOf(t, want) || r.Index != idx {
			t.Fatalf("%s: %+v %v", platform, r, err)
		}
	}
	_, err = oci.Resolve(ctx, host+"/slipway/multi:1", oci.Options{Guard: loopback, Platform: "linux/ppc64le"})
	mustContain(t, err, "no linux/ppc64le image in "+host+"/slipway/multi: available linux/amd64, linux/arm64")

	pulled, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	assertSameLayers(t, amd, pulled)

	_, err = oci.Resolve(ctx, host+"/slipway/busybox:nope", oci.Options{Guard: loopback})
	mustContain(t, err, "registry "+host+": MANIFEST_UNKNOWN: manifest unknown", `(tag "nope" in slipway/busybox)`)
	_, err = oci.Resolve(ctx, host+"/slipway/ghost:1", oci.Options{Guard: loopback})
	// distribution answers an unknown repository's manifest with MANIFEST_UNKNOWN.
	mustContain(t, err, "registry "+host+": MANIFEST_UNKNOWN: manifest unknown", `(tag "1" in slipway/ghost)`)
	var re *oci.RegistryError
	if !errors.As(err, &re) || re.Status != http.StatusNotFound {
		t.Fatalf("%#v", err)
	}

	disk := filepath.Join(t.TempDir(), "vm.qcow2")
	writeRandom(t, disk, 2<<20+3)
	testPushDisk(t, ctx, host, disk)
}

// TestDistributionMemoryBounded pulls a 48 MiB disk image from the real
// registry (another process, so its buffers do not count) and streams the
// disk out, checking that this process allocated far less than the image.
func TestDistributionMemoryBounded(t *testing.T) {
	ctx := context.Background()
	host := testenv.Registry(t)
	const size = 48 << 20
	disk := filepath.Join(t.TempDir(), "big.raw")
	writeRandom(t, disk, size)
	if _, err := oci.PushDisk(ctx, host+"/vms/big:1", disk, oci.Options{Guard: loopback}); err != nil {
		t.Fatal(err)
	}
	res, err := oci.Resolve(ctx, host+"/vms/big:1", oci.Options{Guard: loopback})
	if err != nil || res.Kind != oci.KindDisk {
		t.Fatalf("%+v %v", res, err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	img, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	_, rc, n, err := oci.DiskFile(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := io.Copy(io.Discard, rc)
	rc.Close()
	if err != nil || copied != size || n != size {
		t.Fatalf("streamed %d of %d bytes: %v", copied, n, err)
	}
	runtime.ReadMemStats(&after)
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Fatalf("pull and stream of a %d MiB image allocated %d MiB", size>>20, alloc>>20)
	} else {
		t.Logf("pull and stream of a %d MiB image allocated %.1f MiB in all", size>>20, float64(alloc)/(1<<20))
	}
}
