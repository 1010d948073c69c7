package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestImportSources imports one disk through every kind of path the issue
// names and checks each ends READY with the right format, virtual size and
// sha256, and that the blob read back from S3 matches.
func TestImportSources(t *testing.T) {
	s := newStack(t, stackOptions{})
	dir := t.TempDir()
	const size = 64 << 20

	raw := filepath.Join(dir, "disk.raw")
	writeRandomRaw(t, raw, size)
	qcow := filepath.Join(dir, "disk.qcow2")
	qemuImg(t, "convert", "-f", "raw", "-O", "qcow2", raw, qcow)
	vmdk := filepath.Join(dir, "disk.vmdk")
	qemuImg(t, "convert", "-f", "raw", "-O", "vmdk", "-o", "subformat=streamOptimized", raw, vmdk)
	gz := filepath.Join(dir, "disk.qcow2.gz")
	sh(t, "gzip -c "+qcow+" > "+gz)
	zst := filepath.Join(dir, "disk.raw.zst")
	sh(t, "zstd -q -c "+raw+" > "+zst)

	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	gzSum := fileSHA256(t, gz)

	if err := s.store.EnsureBucket(s.ctx, "user-disks"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.store.Client().FPutObject(s.ctx, "user-disks", "team/disk.vmdk", vmdk, minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name       string
		args       []string
		wantFormat string
	}{
		{"local qcow2 keeps its format", []string{"--path", qcow}, "qcow2"},
		{"local raw converted to zstd qcow2", []string{"--path", raw, "--format", "qcow2", "--compression", "zstd"}, "qcow2"},
		{"local zstd-compressed raw", []string{"--path", zst, "--source-format", "raw"}, "raw"},
		{"http gzip with checksum", []string{"--path", srv.URL + "/disk.qcow2.gz", "--checksum", "sha256:" + gzSum}, "qcow2"},
		{"http converted to vdi", []string{"--path", srv.URL + "/disk.qcow2", "--format", "vdi"}, "vdi"},
		{"s3 vmdk", []string{"--path", "s3://user-disks/team/disk.vmdk"}, "vmdk"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("img-%d", i)
			id, out, code := s.create(append([]string{"--name", name}, c.args...)...)
			if code != 0 {
				t.Fatalf("create exited %d:\n%s", code, out)
			}
			img := s.show(id)
			if img.State != "READY" {
				t.Fatalf("state %s (%s), want READY", img.State, img.Error)
			}
			if path := c.args[1]; img.Origin != path {
				t.Errorf("origin (PATH) %q, want what the user named: %q", img.Origin, path)
			}
			if string(img.Format) != c.wantFormat {
				t.Errorf("format %q, want %q", img.Format, c.wantFormat)
			}
			if img.Size != size {
				t.Errorf("virtual size %d, want %d", img.Size, size)
			}
			sum, n := s.objectSHA256(img.Source)
			if sum != img.SHA256 {
				t.Errorf("S3 object sha256 %s, catalog says %s", sum, img.SHA256)
			}
			if img.StoredSize != n {
				t.Errorf("stored_size %d, object has %d bytes", img.StoredSize, n)
			}
			// The content survives: convert the stored blob back to raw and compare.
			local := filepath.Join(t.TempDir(), "back")
			s.download(img.Source, local)
			back := local + ".raw"
			qemuImg(t, "convert", "-f", c.wantFormat, "-O", "raw", local, back)
			if got, want := fileSHA256(t, back), fileSHA256(t, raw); got != want {
				t.Errorf("content differs from the original disk")
			}
		})
	}

	t.Run("staged uploads are removed after import", func(t *testing.T) {
		for _, o := range s.objects() {
			if strings.HasPrefix(o, "s3://slipway-uploads/") {
				t.Errorf("staged upload left behind: %s", o)
			}
		}
	})

	t.Run("list --json has the documented keys", func(t *testing.T) {
		var list []map[string]any
		if err := json.Unmarshal([]byte(s.mustSlipway("image", "list", "--json")), &list); err != nil {
			t.Fatal(err)
		}
		if len(list) != len(cases) {
			t.Fatalf("%d images listed, want %d", len(list), len(cases))
		}
		for _, k := range strings.Fields("id name user group datastore type state persistent format size sha256 source error rvms") {
			if _, ok := list[0][k]; !ok {
				t.Errorf("key %q missing from list --json", k)
			}
		}
		if id := list[0]["id"]; id != float64(0) {
			t.Errorf("first image ID %v, want 0", id)
		}
	})

	t.Run("list prints oneimage columns", func(t *testing.T) {
		out := s.mustSlipway("image", "list")
		header := strings.Fields(strings.SplitN(out, "\n", 2)[0])
		want := strings.Fields("ID USER GROUP NAME DATASTORE SIZE TYPE PER STAT RVMS")
		if strings.Join(header, " ") != strings.Join(want, " ") {
			t.Errorf("header %v, want %v", header, want)
		}
		if !strings.Contains(out, "oneadmin") || !strings.Contains(out, "rdy") {
			t.Errorf("list lacks owner or state:\n%s", out)
		}
	})
}

// TestBlankDatablocks makes empty DATABLOCKs with each filesystem and checks
// each is a real filesystem with the filesystem's own checker.
func TestBlankDatablocks(t *testing.T) {
	s := newStack(t, stackOptions{})
	cases := []struct{ fs, format string }{
		{"ext4", "qcow2"}, {"ext3", "raw"}, {"ext2", "raw"}, {"xfs", "qcow2"}, {"", "raw"},
	}
	for _, c := range cases {
		t.Run(c.fs+"-"+c.format, func(t *testing.T) {
			args := []string{"--name", "blank-" + c.fs + "-" + c.format, "--type", "DATABLOCK", "--size", "320", "--format", c.format}
			if c.fs != "" {
				args = append(args, "--fs", c.fs)
			}
			id, out, code := s.create(args...)
			if code != 0 {
				t.Fatalf("create exited %d:\n%s", code, out)
			}
			img := s.show(id)
			if img.State != "READY" || string(img.Format) != c.format || img.Size != 320<<20 {
				t.Fatalf("got state %s format %s size %d", img.State, img.Format, img.Size)
			}
			local := filepath.Join(t.TempDir(), "blank")
			s.download(img.Source, local)
			raw := local
			if c.format != "raw" {
				raw = local + ".raw"
				qemuImg(t, "convert", "-f", c.format, "-O", "raw", local, raw)
			}
			switch c.fs {
			case "xfs":
				testenv.Exec(t, "xfs_repair", "-n", "-f", raw)
			case "":
				// No filesystem asked for: the disk must read as zeros.
				if out, _ := exec.Command("blkid", "-p", raw).CombinedOutput(); len(strings.TrimSpace(string(out))) > 0 {
					t.Errorf("blank raw disk carries a signature: %s", out)
				}
			default:
				testenv.Exec(t, "e2fsck", "-fn", raw)
				out := testenv.Exec(t, "dumpe2fs", "-h", raw)
				if c.fs == "ext4" && !strings.Contains(out, "extent") {
					t.Errorf("ext4 without extents:\n%s", out)
				}
				if c.fs == "ext2" && strings.Contains(out, "has_journal") {
					t.Errorf("ext2 with a journal:\n%s", out)
				}
			}
		})
	}

	t.Run("xfs too small is refused with the reason", func(t *testing.T) {
		id, out, code := s.create("--name", "tiny-xfs", "--type", "DATABLOCK", "--size", "16", "--fs", "xfs")
		if code == 0 {
			t.Fatalf("a 16 MiB xfs was accepted:\n%s", out)
		}
		img := s.waitSettled(id, time.Minute)
		if img.State != "ERROR" || !strings.Contains(strings.ToLower(img.Error), "xfs") {
			t.Errorf("state %s error %q", img.State, img.Error)
		}
	})
}

func sh(t *testing.T, script string) {
	t.Helper()
	testenv.Exec(t, "bash", "-c", "set -euo pipefail; "+script)
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
