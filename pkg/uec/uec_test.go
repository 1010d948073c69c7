package uec

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

func file(name, body string) testenv.TarEntry {
	return testenv.TarEntry{Header: tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}, Body: []byte(body)}
}

func gz(t *testing.T, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ubuntu is the member list of a real UEC tarball's layout.
func ubuntu() []testenv.TarEntry {
	return []testenv.TarEntry{
		file("README.files", "what is here"),
		file("precise-server-cloudimg-amd64-vmlinuz-virtual", "KERNEL"),
		file("precise-server-cloudimg-amd64-initrd-virtual", "RAMDISK"),
		file("precise-server-cloudimg-amd64-loader", "grub"),
		file("precise-server-cloudimg-amd64.img", strings.Repeat("D", 4096)),
	}
}

// TestExtract: the three pieces of a UEC tarball land under Extract's own
// names with their bytes; the other files are skipped.
func TestExtract(t *testing.T) {
	dir := t.TempDir()
	set, err := Extract(bytes.NewReader(gz(t, testenv.Tar(t, ubuntu()...))), dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	for role, want := range map[Role]string{Kernel: "KERNEL", Ramdisk: "RAMDISK", Disk: strings.Repeat("D", 4096)} {
		p := set[role]
		got, err := os.ReadFile(p.Path)
		if err != nil || string(got) != want || p.Path != filepath.Join(dir, string(role)) || p.Size != int64(len(want)) {
			t.Errorf("%s: %+v holds %q (%v)", role, p, got, err)
		}
	}
	if set[Kernel].Member != "precise-server-cloudimg-amd64-vmlinuz-virtual" {
		t.Errorf("kernel member %q", set[Kernel].Member)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Errorf("%d files written, want 3", len(entries))
	}
}

// TestExtractHostile: each hostile tarball ends with an error naming the
// problem, and nothing is left in the directory.
func TestExtractHostile(t *testing.T) {
	k, r, d := ubuntu()[1], ubuntu()[2], ubuntu()[4]
	link := func(name, target string, typ byte) testenv.TarEntry {
		return testenv.TarEntry{Header: tar.Header{Name: name, Linkname: target, Mode: 0o777, Typeflag: typ}}
	}
	huge := func() []byte {
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range []testenv.TarEntry{k, r} {
			_ = tw.WriteHeader(&e.Header)
			_, _ = tw.Write(e.Body)
		}
		// A header claiming 1 TiB with no data behind it.
		_ = tw.WriteHeader(&tar.Header{Name: "x.img", Mode: 0o644, Size: 1 << 40, Typeflag: tar.TypeReg})
		return buf.Bytes()
	}
	truncated := testenv.Tar(t, k, r, d)
	for _, c := range []struct {
		name string
		data []byte
		lim  Limits
		want string
	}{
		{"dot-dot", gz(t, testenv.Tar(t, k, r, file("../evil.img", "x"))), Limits{}, `"../evil.img" climbs out of the tarball (..)`},
		{"dot-dot inside", gz(t, testenv.Tar(t, k, r, file("a/../../evil.img", "x"))), Limits{}, `climbs out of the tarball (..)`},
		{"absolute", gz(t, testenv.Tar(t, k, r, file("/etc/evil.img", "x"))), Limits{}, `"/etc/evil.img" has an absolute path`},
		{"symlink", gz(t, testenv.Tar(t, k, r, link("x.img", "/etc/shadow", tar.TypeSymlink))), Limits{}, `"x.img" is a symbolic link`},
		{"hard link", gz(t, testenv.Tar(t, k, link("x-initrd", k.Header.Name, tar.TypeLink), d)), Limits{}, `"x-initrd" is a hard link`},
		{"two kernels", gz(t, testenv.Tar(t, k, r, d, file("other-vmlinuz-generic", "K2"))), Limits{}, `two kernels: "precise-server-cloudimg-amd64-vmlinuz-virtual" and "other-vmlinuz-generic"`},
		{"two disks", gz(t, testenv.Tar(t, k, r, d, file("b.img", "D2"))), Limits{}, `two disks`},
		{"no ramdisk", gz(t, testenv.Tar(t, k, d)), Limits{}, `no ramdisk (*-initrd*)`},
		{"nothing", gz(t, testenv.Tar(t, file("README.files", "x"))), Limits{}, `no kernel (*-vmlinuz*), no ramdisk (*-initrd*), no disk (*.img)`},
		{"huge header", gz(t, huge()), Limits{}, `"x.img" is 1099511627776 bytes: the pieces would exceed the limit of 65536 MiB`},
		{"over a small limit", gz(t, testenv.Tar(t, ubuntu()...)), Limits{MaxBytes: 1024}, `would exceed the limit of 0 MiB`},
		{"too many entries", gz(t, testenv.Tar(t, ubuntu()...)), Limits{MaxEntries: 2}, `more than 2 entries`},
		{"truncated", gz(t, truncated[:len(truncated)-1024-2048]), Limits{}, `is truncated`},
		{"not gzip", testenv.Tar(t, ubuntu()...), Limits{}, `not gzip`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			_, err := Extract(bytes.NewReader(c.data), dir, c.lim)
			if !errors.Is(err, ErrHostile) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want ErrHostile saying %q", err, c.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("%d files left behind", len(entries))
			}
		})
	}
}
