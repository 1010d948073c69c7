package oci_test

import (
	"context"
	"errors"
	"testing"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

// An image whose layers add up to more than MaxBytes is refused from its
// manifest: not one layer blob is fetched.
func TestPullRefusesImagesOverMaxBytes(t *testing.T) {
	var blobs counter
	host := testenv.OCIRegistry(t, blobs.wrap(isBlobGet))
	img := multiLayer(t)
	dig := push(t, host+"/big/app:1", img)
	m, _ := img.Manifest()
	var total int64
	for _, l := range m.Layers {
		total += l.Size
	}
	before := blobs.count()
	_, err := oci.Pull(context.Background(), host+"/big/app@"+dig, t.TempDir(), oci.Options{Guard: loopback, MaxBytes: total - 1})
	if !errors.Is(err, oci.ErrTooLarge) {
		t.Fatalf("Pull with MaxBytes one short of the layers: %v, want ErrTooLarge", err)
	}
	if n := blobs.count() - before; n != 1 { // the config blob only
		t.Errorf("%d blobs fetched, want only the config", n)
	}
	got, err := oci.Pull(context.Background(), host+"/big/app@"+dig, t.TempDir(), oci.Options{Guard: loopback, MaxBytes: total})
	if err != nil {
		t.Fatalf("Pull with MaxBytes equal to the layers: %v", err)
	}
	if err := got.Close(); err != nil {
		t.Fatal(err)
	}
}
