package integration

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestExport pushes Slipway images to a real OCI registry on loopback with
// `slipway image export` as KubeVirt containerDisks and RancherVM images,
// checks what was pushed (one layer, one zlib-compressed qcow2 at the
// layout's path, owner and mode), imports each back through the whole
// docker:// saga and compares the disks' bytes with the original. Images
// that are not READY disks, and missing ones, are refused with a message
// that says why.
func TestExport(t *testing.T) {
	reg := httptest.NewServer(registry.New(registry.Logger(log.New(io.Discard, "", 0))))
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t)})
	dir := t.TempDir()

	orig := filepath.Join(dir, "orig.raw")
	writeRandomRaw(t, orig, 32<<20)
	want := fileSHA256(t, orig)
	id, out, code := s.create("--name", "app", "--path", orig, "--format", "qcow2")
	if code != 0 {
		t.Fatalf("create exited %d:\n%s", code, out)
	}
	img := s.show(id)
	if got := rawSHA256(t, s, img.Source, "qcow2"); got != want {
		t.Fatalf("the stored qcow2 reads back as %s, the original is %s", got, want)
	}

	t.Run("kubevirt containerDisk round trip", func(t *testing.T) {
		ref := host + "/disks/app:1"
		stdout, stderr, code := s.slipway("image", "export", fmt.Sprint(id), "--oci", ref)
		if code != 0 {
			t.Fatalf("export exited %d:\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
		}
		t.Logf("export's stderr:\n%s", stderr)
		digest := pushedDigest(t, stdout, ref)
		for _, phase := range []string{"downloaded", "converting qcow2", "pushing"} {
			if !strings.Contains(stderr, phase) {
				t.Errorf("no %q progress line on stderr:\n%s", phase, stderr)
			}
		}
		disk := pulledDisk(t, ref, digest, "disk/disk.qcow2", 107, 0o440)
		checkZlibQcow2(t, disk)
		if got := rawFileSHA256(t, disk, "qcow2"); got != want {
			t.Fatalf("the pushed disk reads back as %s, the original is %s", got, want)
		}
		back := reimport(t, s, "app-back", ref)
		if got := rawSHA256(t, s, back.Source, back.Format); got != want {
			t.Fatalf("the re-imported image reads back as %s, the original is %s", got, want)
		}
	})

	t.Run("rancher layout round trip by name", func(t *testing.T) {
		ref := host + "/disks/app-rancher:1"
		tmp := t.TempDir()
		stdout := s.mustSlipway("image", "export", "app", "--oci", ref, "--layout", "rancher", "--insecure", "--tmp-dir", tmp)
		assertEmptyDir(t, tmp)
		digest := pushedDigest(t, stdout, ref)
		disk := pulledDisk(t, ref, digest, "base_image/disk.qcow2", 0, 0o444)
		checkZlibQcow2(t, disk)
		back := reimport(t, s, "app-rancher-back", ref)
		if got := rawSHA256(t, s, back.Source, back.Format); got != want {
			t.Fatalf("the re-imported image reads back as %s, the original is %s", got, want)
		}
	})

	t.Run("compressed qcow2 is pushed as it is, zstd is recompressed", func(t *testing.T) {
		// Text compresses, so the stored qcow2s hold compressed clusters.
		text := filepath.Join(dir, "text.raw")
		if err := os.WriteFile(text, []byte(strings.Repeat("slipway exports compressible disks\n", 200000)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(text, 8<<20); err != nil {
			t.Fatal(err)
		}
		textSum := fileSHA256(t, text)
		for _, c := range []string{"zlib", "zstd"} {
			cid, out, code := s.create("--name", "text-"+c, "--path", text, "--format", "qcow2", "--compression", c)
			if code != 0 {
				t.Fatalf("create (%s) exited %d:\n%s", c, code, out)
			}
			stored := s.show(cid)
			ref := host + "/disks/text:" + c
			stdout, stderr, code := s.slipway("image", "export", fmt.Sprint(cid), "--oci", ref)
			if code != 0 {
				t.Fatalf("export (%s) exited %d:\n%s%s", c, code, stdout, stderr)
			}
			disk := pulledDisk(t, ref, pushedDigest(t, stdout, ref), "disk/disk.qcow2", 107, 0o440)
			checkZlibQcow2(t, disk)
			if got := rawFileSHA256(t, disk, "qcow2"); got != textSum {
				t.Fatalf("%s: the pushed disk reads back as %s, want %s", c, got, textSum)
			}
			asIs := strings.Contains(stderr, "pushed as it is")
			if c == "zlib" {
				if !asIs || fileSHA256(t, disk) != stored.SHA256 {
					t.Errorf("zlib: want the stored blob (sha256 %s) pushed unchanged; stderr:\n%s", stored.SHA256, stderr)
				}
			} else if asIs || !strings.Contains(stderr, "compression is zstd") {
				t.Errorf("zstd: want a conversion to zlib; stderr:\n%s", stderr)
			}
		}
	})

	t.Run("refusals", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.raw")
		writeRandomRaw(t, bad, 1<<20)
		errID, out, code := s.create("--name", "broken", "--path", bad, "--source-format", "qcow2")
		if code == 0 {
			t.Fatalf("a raw file declared qcow2 was imported:\n%s", out)
		}
		kernel := filepath.Join(dir, "vmlinuz")
		// A whole number of sectors: the converter inspects files as disks.
		if err := os.WriteFile(kernel, []byte(strings.Repeat("not really a kernel\n", 4096/16)[:4096]), 0o644); err != nil {
			t.Fatal(err)
		}
		kid, out, code := s.create("--name", "kernel", "--type", "KERNEL", "--datastore", "files", "--path", kernel)
		if code != 0 {
			t.Fatalf("kernel create exited %d:\n%s", code, out)
		}
		for _, c := range []struct {
			name string
			args []string
			want []string
		}{
			{"ERROR image", []string{fmt.Sprint(errID), "--oci", host + "/disks/broken:1"}, []string{"ERROR, not READY"}},
			{"missing image", []string{"9999", "--oci", host + "/disks/none:1"}, []string{"image 9999 does not exist"}},
			{"missing name", []string{"nope", "--oci", host + "/disks/none:1"}, []string{`no image is named "nope"`}},
			{"file type", []string{fmt.Sprint(kid), "--oci", host + "/disks/kernel:1"}, []string{"KERNEL file, not a disk"}},
			{"digest reference", []string{fmt.Sprint(id), "--oci", host + "/disks/app@sha256:" + strings.Repeat("0", 64)}, []string{"give a tag"}},
			{"bad layout", []string{fmt.Sprint(id), "--oci", host + "/disks/app:2", "--layout", "vmware"}, []string{"want kubevirt or rancher"}},
		} {
			stdout, stderr, code := s.slipway(append([]string{"image", "export"}, c.args...)...)
			if code == 0 {
				t.Errorf("%s: export succeeded:\n%s", c.name, stdout)
				continue
			}
			t.Logf("%s: %s", c.name, strings.TrimSpace(stderr))
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("%s: stderr %q does not say %q", c.name, stderr, w)
				}
			}
		}
		// A push that fails after the download leaves no temporary file.
		gone := httptest.NewServer(registry.New())
		goneHost := strings.TrimPrefix(gone.URL, "http://")
		gone.Close()
		tmp := t.TempDir()
		_, stderr, code := s.slipway("image", "export", fmt.Sprint(id), "--oci", goneHost+"/disks/app:1", "--tmp-dir", tmp)
		if code == 0 || !strings.Contains(stderr, "push to "+goneHost) {
			t.Errorf("export to a registry that is gone: exit %d, stderr %q", code, stderr)
		}
		assertEmptyDir(t, tmp)

		// Nothing was pushed for the refused exports.
		for _, repo := range []string{"disks/broken", "disks/none", "disks/kernel"} {
			if _, err := remote.Head(mustTag(t, host+"/"+repo+":1")); err == nil {
				t.Errorf("%s:1 exists after a refused export", repo)
			}
		}
	})
}

// pushedDigest reads "pushed REF@sha256:…" from export's stdout.
func pushedDigest(t *testing.T, stdout, ref string) string {
	t.Helper()
	line := strings.TrimSpace(stdout)
	digest, ok := strings.CutPrefix(line, "pushed "+ref+"@")
	if !ok || !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
		t.Fatalf("export printed %q, want \"pushed %s@sha256:…\"", line, ref)
	}
	return digest
}

// pulledDisk fetches ref from the registry, checks it is the digest export
// printed and holds exactly one layer whose only file is path with the
// given owner and mode, and writes that file to a temporary file.
func pulledDisk(t *testing.T, ref, digest, path string, uid int, mode int64) string {
	t.Helper()
	img, err := remote.Image(mustTag(t, ref))
	if err != nil {
		t.Fatal(err)
	}
	if d, err := img.Digest(); err != nil || d.String() != digest {
		t.Fatalf("%s has digest %v (%v), export printed %s", ref, d, err, digest)
	}
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	if len(layers) != 1 {
		t.Fatalf("%s has %d layers, want 1 (FROM scratch, one disk)", ref, len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := filepath.Join(t.TempDir(), filepath.Base(path))
	var files []string
	testenv.ReadTar(t, rc, func(h *tar.Header, content io.Reader) {
		if h.Typeflag != tar.TypeReg {
			return
		}
		files = append(files, h.Name)
		if h.Name != path {
			return
		}
		if h.Uid != uid || h.Gid != uid || h.Mode&0o7777 != mode {
			t.Errorf("%s: owner %d:%d mode %o, want %d:%d mode %o", path, h.Uid, h.Gid, h.Mode, uid, uid, mode)
		}
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.Copy(f, content); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	})
	if len(files) != 1 || files[0] != path {
		t.Fatalf("%s's layer holds files %v, want only %s", ref, files, path)
	}
	return out
}

// checkZlibQcow2 asks qemu-img whether path is a qcow2 with zlib
// compression: what KubeVirt's and RancherVM's QEMU can read.
func checkZlibQcow2(t *testing.T, path string) {
	t.Helper()
	var info struct {
		Format         string `json:"format"`
		FormatSpecific struct {
			Data struct {
				CompressionType string `json:"compression-type"`
			} `json:"data"`
		} `json:"format-specific"`
	}
	if err := json.Unmarshal([]byte(qemuImg(t, "info", "--output=json", "-f", "qcow2", path)), &info); err != nil {
		t.Fatal(err)
	}
	if info.Format != "qcow2" || info.FormatSpecific.Data.CompressionType != "zlib" {
		t.Fatalf("pushed disk: format %s compression %q, want qcow2 zlib", info.Format, info.FormatSpecific.Data.CompressionType)
	}
}

// reimport imports ref back as a disk carried in an image and waits for READY.
func reimport(t *testing.T, s *stack, name, ref string) imageRecord {
	t.Helper()
	id, out, code := s.create("--name", name, "--path", "docker://"+ref+"?format=qcow2")
	if code != 0 {
		t.Fatalf("import of %s exited %d:\n%s", ref, code, out)
	}
	img := s.show(id)
	if img.State != "READY" || string(img.Format) != "qcow2" {
		t.Fatalf("re-imported image: state %s format %s error %q", img.State, img.Format, img.Error)
	}
	return imageRecord{Source: img.Source, Format: string(img.Format)}
}

// imageRecord is what the round trips need of an image.
type imageRecord struct {
	Source, Format string
}

// rawSHA256 downloads an s3:// blob of format and hashes it as raw.
func rawSHA256(t *testing.T, s *stack, url, format string) string {
	t.Helper()
	local := filepath.Join(t.TempDir(), "blob")
	s.download(url, local)
	return rawFileSHA256(t, local, format)
}

// rawFileSHA256 converts a disk to raw with qemu-img and hashes it.
func rawFileSHA256(t *testing.T, path, format string) string {
	t.Helper()
	raw := path + ".raw"
	qemuImg(t, "convert", "-f", format, "-O", "raw", path, raw)
	defer os.Remove(raw)
	return fileSHA256(t, raw)
}

func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("export left %s in its temporary directory", e.Name())
	}
}

func mustTag(t *testing.T, ref string) name.Tag {
	t.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
