package integration

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestImageDownload: `slipway image download` streams the stored blob
// byte for byte (to -o and to standard output), converts to another
// format with the result qemu-img itself gives (qcow2 → raw is
// byte-identical to `qemu-img convert` of the source; a VMDK passes
// `qemu-img check`), gives a KERNEL file back as it is, and refuses a
// format a file cannot have. Nothing is left beside -o's file.
func TestImageDownload(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := t.TempDir()
	raw := filepath.Join(dir, "src.raw")
	writeRandomRaw(t, raw, 8<<20)
	src := filepath.Join(dir, "src.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, src)
	id, out, code := s.create("--name", "dl", "--path", src)
	if code != 0 {
		t.Fatalf("create: %s", out)
	}
	img := s.show(id)
	if img.Format != "qcow2" {
		t.Fatalf("stored as %s, want qcow2", img.Format)
	}
	ref := fmt.Sprint(id)

	t.Run("as stored, to a file", func(t *testing.T) {
		dst := filepath.Join(dir, "as-stored.qcow2")
		s.mustSlipway("image", "download", ref, "-o", dst)
		if got := fileSHA256(t, dst); got != img.SHA256 {
			t.Errorf("downloaded sha256 %s, catalog %s", got, img.SHA256)
		}
	})

	want := filepath.Join(dir, "want.raw")
	qemuImg(t, "convert", "-f", "qcow2", "-O", "raw", src, want)
	wantSum := fileSHA256(t, want)

	t.Run("qcow2 to raw, to a file", func(t *testing.T) {
		dst := filepath.Join(dir, "out.raw")
		s.mustSlipway("image", "download", ref, "--format", "raw", "-o", dst)
		if got := fileSHA256(t, dst); got != wantSum {
			t.Errorf("raw download sha256 %s, qemu-img convert of the source %s", got, wantSum)
		}
		// qemu-img wrote the file itself: the zero half is holes.
		var st syscall.Stat_t
		if err := syscall.Stat(dst, &st); err != nil {
			t.Fatal(err)
		}
		if used := st.Blocks * 512; used > 6<<20 {
			t.Errorf("the raw output uses %d bytes of disk for 8 MiB half zeros: not sparse", used)
		}
	})

	t.Run("qcow2 to raw, to standard output", func(t *testing.T) {
		stdout := s.mustSlipway("image", "download", ref, "--format", "raw")
		sum := sha256.Sum256([]byte(stdout))
		if got := hex.EncodeToString(sum[:]); got != wantSum {
			t.Errorf("stdout (%d bytes) sha256 %s, want %s", len(stdout), got, wantSum)
		}
	})

	t.Run("vmdk opens with qemu-img check", func(t *testing.T) {
		dst := filepath.Join(dir, "out.vmdk")
		s.mustSlipway("image", "download", ref, "--format", "vmdk", "-o", dst)
		qemuImg(t, "check", "-f", "vmdk", dst)
		back := filepath.Join(dir, "vmdk-back.raw")
		qemuImg(t, "convert", "-f", "vmdk", "-O", "raw", dst, back)
		if got := fileSHA256(t, back); got != wantSum {
			t.Errorf("the VMDK's data differ from the source's")
		}
	})

	t.Run("a kernel file comes back byte for byte; --format is refused", func(t *testing.T) {
		k := filepath.Join(dir, "vmlinuz")
		writeFile(t, k, bytes.Repeat([]byte("kernel? "), 1000))
		kid, out, code := s.create("--name", "k", "--type", "KERNEL", "--datastore", "files", "--path", k)
		if code != 0 {
			t.Fatal(out)
		}
		stdout := s.mustSlipway("image", "download", fmt.Sprint(kid))
		if stdout != strings.Repeat("kernel? ", 1000) {
			t.Errorf("kernel downloaded as %d bytes", len(stdout))
		}
		_, stderr, code := s.slipway("image", "download", fmt.Sprint(kid), "--format", "qcow2", "-o", filepath.Join(dir, "k.qcow2"))
		if code == 0 || !strings.Contains(stderr, "is a KERNEL file, not a disk") {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})

	t.Run("an unknown format is a usage error", func(t *testing.T) {
		_, stderr, code := s.slipway("image", "download", ref, "--format", "qed")
		if code != 2 || !strings.Contains(stderr, `--format "qed"`) {
			t.Errorf("exit %d: %s", code, stderr)
		}
	})

	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.Contains(e.Name(), ".part-") {
			t.Errorf("a partial output was left: %s", e.Name())
		}
	}
}

// TestISOTypedCDROM: an ISO 9660 image created without a type is a
// CDROM; one created --type OS stays OS; a raw disk stays OS.
func TestISOTypedCDROM(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := t.TempDir()
	iso := makeISO(t, dir)
	raw := filepath.Join(dir, "disk.raw")
	writeRandomRaw(t, raw, 4<<20)

	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"iso without a type", []string{"--path", iso}, "CDROM"},
		{"iso stored as qcow2", []string{"--path", iso, "--format", "qcow2"}, "CDROM"},
		{"iso --type OS", []string{"--path", iso, "--type", "OS"}, "OS"},
		{"raw without a type", []string{"--path", raw}, "OS"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, out, code := s.create(append([]string{"--name", strings.ReplaceAll(c.name, " ", "-")}, c.args...)...)
			if code != 0 {
				t.Fatalf("create: %s", out)
			}
			if img := s.show(id); string(img.Type) != c.want {
				t.Errorf("type %s (format %s), want %s", img.Type, img.Format, c.want)
			}
		})
	}
}

// makeISO writes dir/cd.iso, an ISO 9660 image (volume DATA, Joliet and
// Rock Ridge) holding one README, with genisoimage.
func makeISO(t testing.TB, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	if err := os.MkdirAll(tree, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(tree, "README"), []byte("on the cdrom\n"))
	iso := filepath.Join(dir, "cd.iso")
	testenv.Exec(t, "genisoimage", "-quiet", "-o", iso, "-V", "DATA", "-J", "-R", tree)
	return iso
}
