package integration

import (
	"bytes"
	"compress/gzip"
	"path/filepath"
	"testing"
)

// TestFileImages checks that KERNEL, RAMDISK and CONTEXT images are files,
// not disks: stored byte for byte in the files datastore — a gzip'd initrd
// stays compressed, an odd-sized kernel keeps its size — and refused in the
// image datastore.
func TestFileImages(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := t.TempDir()

	kernel := filepath.Join(dir, "vmlinuz")
	writeFile(t, kernel, bytes.Repeat([]byte("not really a kernel "), 617)) // 12340 bytes
	var initrd bytes.Buffer
	zw := gzip.NewWriter(&initrd)
	zw.Write(bytes.Repeat([]byte("070701 cpio-ish "), 4096))
	zw.Close()
	ramdisk := filepath.Join(dir, "initrd.img")
	writeFile(t, ramdisk, initrd.Bytes())

	for _, c := range []struct{ name, typ, path string }{
		{"kernel", "KERNEL", kernel},
		{"initrd", "RAMDISK", ramdisk},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, out, code := s.create("--name", c.name, "--type", c.typ, "--datastore", "files", "--path", c.path)
			if code != 0 {
				t.Fatalf("create exited %d:\n%s", code, out)
			}
			img := s.show(id)
			if img.State != "READY" || img.Datastore != "files" {
				t.Fatalf("state %s datastore %s (%s)", img.State, img.Datastore, img.Error)
			}
			sum, n := s.objectSHA256(img.Source)
			if want := fileSHA256(t, c.path); sum != want || sum != img.SHA256 {
				t.Errorf("stored %s, file %s, catalog %s: not byte for byte", sum, want, img.SHA256)
			}
			if img.Size != n {
				t.Errorf("size %d, file has %d bytes", img.Size, n)
			}
		})
	}

	t.Run("a kernel is refused in the image datastore", func(t *testing.T) {
		stdout, stderr, code := s.slipway("image", "create", "--name", "k2", "--type", "KERNEL", "--datastore", "default", "--path", kernel)
		if code == 0 || idLine(stdout) != "" {
			t.Fatalf("accepted: %s %s", stdout, stderr)
		}
	})
}
