package oci_test

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/oci"
	"github.com/slipway/slipway/pkg/testenv"
)

func TestDiskDetection(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	bb, _ := busyboxImage(t, "linux/amd64").Layers()
	tests := []struct {
		name   string
		layers []v1.Layer
		kind   string
		path   string
		err    string
	}{
		{"containerDisk", []v1.Layer{layer(t, dir("disk/"), file("disk/root.qcow2", "QFI\xfb..."))}, oci.KindDisk, "/disk/root.qcow2", ""},
		{"RancherVM", []v1.Layer{layer(t, dir("base_image/"), file("base_image/ubuntu.img", "disk"))}, oci.KindDisk, "/base_image/ubuntu.img", ""},
		{"RancherVM on busybox", append(bb[:1:1], layer(t, dir("./base_image"), file("./base_image/u.qcow2", "disk"))), oci.KindDisk, "/base_image/u.qcow2", ""},
		{"disk in its own layer", []v1.Layer{layer(t, dir("disk/")), layer(t, file("/disk/a.raw", "disk"))}, oci.KindDisk, "/disk/a.raw", ""},
		{"same file twice", []v1.Layer{layer(t, file("disk/a.raw", "old")), layer(t, file("disk/a.raw", "new"))}, oci.KindDisk, "/disk/a.raw", ""},
		{"nested under disk", []v1.Layer{layer(t, dir("disk/"), dir("disk/sub/"), file("disk/sub/x.img", "d"))}, oci.KindDisk, "/disk/sub/x.img", ""},
		{"container", bb, oci.KindContainer, "", ""},
		{"container with a disk file too", append(bb[:1:1], layer(t, file("etc/motd", "hi"), file("disk/x.img", "d"))), oci.KindContainer, "", ""},
		{"whiteout", []v1.Layer{layer(t, file("disk/a.img", "d")), layer(t, file("disk/.wh.b.img", ""))}, oci.KindContainer, "", ""},
		{"zero disk files", []v1.Layer{layer(t, dir("disk/"))}, "", "", "no disk file under /disk/ or /base_image/: the directory is there but empty"},
		{"zero on a base", append(bb[:1:1], layer(t, dir("base_image/"))), "", "", "no disk file under /disk/ or /base_image/: the directory is there but empty"},
		{"directories only", []v1.Layer{layer(t, dir("etc/"))}, "", "", "no disk file under /disk/ or /base_image/: the image holds only directories"},
		{"two disk files", []v1.Layer{layer(t, dir("disk/"), file("disk/a.qcow2", "a"), file("disk/b.qcow2", "b"))}, "", "", "2 disk files (/disk/a.qcow2, /disk/b.qcow2): a disk image must carry exactly one"},
		{"one in each dir", []v1.Layer{layer(t, file("base_image/a.img", "a")), layer(t, file("disk/b.img", "b"))}, "", "", "2 disk files (/base_image/a.img, /disk/b.img)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			img := image(t, "linux/amd64", tc.layers...)
			dig := push(t, host+"/disks/x:1", img)
			res, err := oci.Resolve(ctx, host+"/disks/x:1", oci.Options{Guard: loopback})
			if tc.err != "" {
				mustContain(t, err, host+"/disks/x: ", tc.err)
				var de *oci.DiskError
				if !errors.As(err, &de) {
					t.Fatalf("%v is not a DiskError", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Kind != tc.kind || res.DiskPath != tc.path || res.Digest != dig {
				t.Fatalf("kind %q path %q, want %q %q", res.Kind, res.DiskPath, tc.kind, tc.path)
			}
			pulled, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
			if err != nil {
				t.Fatal(err)
			}
			name, rc, _, err := oci.DiskFile(ctx, pulled)
			if tc.kind == oci.KindContainer {
				if !errors.Is(err, oci.ErrNotDisk) {
					t.Fatalf("DiskFile of a container: %v", err)
				}
				return
			}
			if err != nil || name != tc.path {
				t.Fatalf("DiskFile: %q %v", name, err)
			}
			rc.Close()
		})
	}
}

// writeRandom writes size random bytes to path.
func writeRandom(t *testing.T, path string, size int64) {
	t.Helper()
	testenv.WriteDisk(t, path, size, io.LimitReader(rand.Reader, size))
}

func TestPushDisk(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	disk := filepath.Join(t.TempDir(), "vm.qcow2")
	writeRandom(t, disk, 3<<20+17)
	testPushDisk(t, ctx, host, disk)
}

func testPushDisk(t *testing.T, ctx context.Context, host, disk string) {
	dig, err := oci.PushDisk(ctx, host+"/vms/ubuntu:24.04", disk, oci.Options{Guard: loopback, Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	res, err := oci.Resolve(ctx, host+"/vms/ubuntu:24.04", oci.Options{Guard: loopback, Platform: "linux/arm64"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != dig || res.Kind != oci.KindDisk || res.DiskPath != "/disk/vm.qcow2" || res.Platform != "linux/arm64" {
		t.Fatalf("resolved %+v, pushed %s", res, dig)
	}
	img, err := pullAll(t, ctx, res.Reference, t.TempDir(), oci.Options{Guard: loopback})
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers, want 1", len(layers))
	}
	if mt, _ := layers[0].MediaType(); !mt.IsLayer() {
		t.Fatalf("layer media type %s", mt)
	}
	assertDiskHeader(t, layers[0], "disk/vm.qcow2", 107, 0o440)

	name, rc, size, err := oci.DiskFile(ctx, img)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	fi, _ := os.Stat(disk)
	if name != "/disk/vm.qcow2" || size != fi.Size() {
		t.Fatalf("DiskFile %q %d bytes, want %d", name, size, fi.Size())
	}
	assertSameFile(t, rc, disk)

	// The same disk gives the same image.
	again, err := oci.PushDisk(ctx, host+"/vms/ubuntu:again", disk, oci.Options{Guard: loopback, Platform: "linux/arm64"})
	if err != nil || again != dig {
		t.Fatalf("second push %s %v, want %s", again, err, dig)
	}
}

func assertDiskHeader(t *testing.T, l v1.Layer, name string, owner int, mode int64) {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	var names []string
	testenv.ReadTar(t, rc, func(h *tar.Header, _ io.Reader) {
		names = append(names, h.Name)
		if h.Name == name && (h.Uid != owner || h.Gid != owner || h.Mode != mode) {
			t.Fatalf("%s owned %d:%d mode %o, want %d:%d %o", name, h.Uid, h.Gid, h.Mode, owner, owner, mode)
		}
	})
	if len(names) != 2 || names[0] != "disk/" || names[1] != name {
		t.Fatalf("layer holds %q", names)
	}
}

func TestPushDiskRancherVM(t *testing.T) {
	ctx := context.Background()
	host := testenv.OCIRegistry(t)
	disk := filepath.Join(t.TempDir(), "base.img")
	writeRandom(t, disk, 1<<20)
	if _, err := oci.PushDiskLayout(ctx, host+"/rvm/base:1", disk, oci.RancherVMLayout, oci.Options{Guard: loopback}); err != nil {
		t.Fatal(err)
	}
	res, err := oci.Resolve(ctx, host+"/rvm/base:1", oci.Options{Guard: loopback})
	if err != nil || res.Kind != oci.KindDisk || res.DiskPath != "/base_image/base.img" {
		t.Fatalf("%+v %v", res, err)
	}

	_, err = oci.PushDisk(ctx, host+"/rvm/base:1", filepath.Dir(disk), oci.Options{Guard: loopback})
	mustContain(t, err, "not a regular file")
	_, err = oci.PushDisk(ctx, host+"/rvm/base@sha256:"+string(make([]byte, 0)), disk, oci.Options{Guard: loopback})
	mustContain(t, err, "want registry/repository[:tag]")
}
