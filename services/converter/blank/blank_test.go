package blank

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/pkg/testenv"
)

func TestCreate(t *testing.T) {
	cases := []struct {
		fs, format string
		sizeMiB    int64
	}{
		{"", "raw", 64},
		{"", "qcow2", 64},
		{"ext2", "raw", 64},
		{"ext3", "qcow2", 64},
		{"ext4", "raw", 128},
		{"ext4", "qcow2", 128},
		{"xfs", "raw", 300},
		{"xfs", "qcow2", 320},
	}
	runner := &qemuimg.Runner{}
	for _, c := range cases {
		t.Run(c.fs+"-"+c.format, func(t *testing.T) {
			dir := t.TempDir()
			path, err := Create(context.Background(), dir, c.sizeMiB, c.fs, c.format, runner)
			if err != nil {
				t.Fatalf("Create: %v", err)
			}
			rep, err := inspect.InspectFile(path, inspect.Limits{})
			if err != nil {
				t.Fatalf("inspect: %v", err)
			}
			if string(rep.Format) != c.format || rep.VirtualSize != c.sizeMiB<<20 {
				t.Fatalf("got %s of %d bytes, want %s of %d", rep.Format, rep.VirtualSize, c.format, c.sizeMiB<<20)
			}
			if c.format == "raw" {
				assertSparse(t, path)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 1 {
				t.Errorf("dir holds %d files, want only the disk", len(entries))
			}
			if c.fs == "" {
				return
			}
			raw := path
			if c.format == "qcow2" {
				raw = filepath.Join(t.TempDir(), "check.raw")
				testenv.Exec(t, "qemu-img", "convert", "-f", "qcow2", "-O", "raw", path, raw)
			}
			if c.fs == "xfs" {
				testenv.Exec(t, "xfs_repair", "-n", "-f", raw)
			} else {
				testenv.Exec(t, "e2fsck", "-fn", raw)
				out := testenv.Exec(t, "dumpe2fs", "-h", raw)
				if c.fs == "ext2" && strings.Contains(out, "has_journal") {
					t.Errorf("ext2 has a journal")
				}
				if c.fs != "ext2" && !strings.Contains(out, "has_journal") {
					t.Errorf("%s has no journal", c.fs)
				}
			}
		})
	}
}

func TestCreateRefusals(t *testing.T) {
	cases := []struct {
		sizeMiB    int64
		fs, format string
		want       string
	}{
		{100, "xfs", "raw", "xfs needs at least 300 MiB"},
		{0, "", "raw", "out of range"},
		{MaxSizeMiB + 1, "", "raw", "out of range"},
		{10, "btrfs", "raw", `file system "btrfs" is not supported`},
		{10, "", "vmdk", `format "vmdk" is not supported`},
	}
	for _, c := range cases {
		dir := t.TempDir()
		_, err := Create(context.Background(), dir, c.sizeMiB, c.fs, c.format, nil)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Create(%d, %q, %q) err = %v, want %q", c.sizeMiB, c.fs, c.format, err, c.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("refused Create left %d files", len(entries))
		}
	}
}

func TestCreateCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dir := t.TempDir()
	if _, err := Create(ctx, dir, 64, "ext4", "raw", nil); err == nil {
		t.Fatal("Create with a cancelled context succeeded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("cancelled Create left %d files", len(entries))
	}
}

func assertSparse(t *testing.T, path string) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if used := st.Blocks * 512; used > st.Size/2 {
		t.Errorf("%s uses %d of %d bytes on disk: not sparse", path, used, st.Size)
	}
}
