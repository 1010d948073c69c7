package deb

import (
	"bytes"
	"crypto/sha256"
	"errors"

	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// debianPackage is the linux-image .deb tools/fetch-kernel.sh keeps.
func debianPackage(t *testing.T) (deb, vmlinuz string) {
	t.Helper()
	deb = testenv.RepoFile(t, "bin/kernel/linux-image.deb", "run tools/fetch-kernel.sh")
	return deb, filepath.Join(filepath.Dir(deb), "vmlinuz")
}

func TestDebianPackage(t *testing.T) {
	debPath, vmlinuz := debianPackage(t)
	f, err := os.Open(debPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	start := time.Now()
	k, err := Extract(f, dir, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: kernel %s, %d modules, %d MiB written in %s", filepath.Base(debPath), k.Version, k.Modules, k.Bytes>>20, time.Since(start).Round(time.Millisecond))
	if want, _ := os.ReadFile(filepath.Join(filepath.Dir(vmlinuz), "version")); k.Version != strings.TrimSpace(string(want)) {
		t.Errorf("version %q, bin/kernel/version says %q", k.Version, want)
	}
	if sum(t, k.Image) != sum(t, vmlinuz) {
		t.Errorf("%s differs from bin/kernel/vmlinuz", k.Image)
	}
	if k.Config == "" || k.ModulesDir != filepath.Join(dir, "lib", "modules", k.Version) {
		t.Errorf("config %q modules %q", k.Config, k.ModulesDir)
	}
	if k.Modules < 1000 {
		t.Errorf("only %d modules", k.Modules)
	}
	for _, m := range []string{"kernel/drivers/block/virtio_blk.ko", "kernel/fs/ext4/ext4.ko", "modules.builtin"} {
		if _, err := os.Stat(filepath.Join(k.ModulesDir, m)); err != nil {
			t.Error(err)
		}
	}
	// Nothing but boot/ and lib/ was written.
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "boot" && e.Name() != "lib" {
			t.Errorf("unexpected %s in the output", e.Name())
		}
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

// buildDeb makes a package with dpkg-deb from a tree.
func buildDeb(t *testing.T, files map[string]string, compression string) string {
	t.Helper()
	testenv.Program(t, "dpkg-deb", "make deps")
	root := t.TempDir()
	files["DEBIAN/control"] = "Package: linux-image-test\nVersion: 1\nArchitecture: amd64\nMaintainer: t <t@t>\nDescription: test\n"
	for name, content := range files {
		p := filepath.Join(root, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "test.deb")
	if msg, err := exec.Command("dpkg-deb", "--root-owner-group", "-Z"+compression, "--build", root, out).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb: %v\n%s", err, msg)
	}
	return out
}

func TestCompressionsAndLayouts(t *testing.T) {
	for _, c := range []string{"xz", "zstd", "gzip", "none"} {
		t.Run(c, func(t *testing.T) {
			deb := buildDeb(t, map[string]string{
				"boot/vmlinuz-9.9.9-test":                                  "kernel bytes",
				"usr/lib/modules/9.9.9-test/kernel/fs/a.ko":                "module a",
				"usr/lib/modules/9.9.9-test/kernel/fs/b.ko.xz":             "module b",
				"usr/lib/modules/9.9.9-test/modules.builtin":               "kernel/fs/c.ko\n",
				"usr/share/doc/linux-image-test/changelog":                 "not extracted",
				"etc/kernel/postinst.d/not-extracted":                      "#!/bin/sh\n",
				"usr/lib/modules/9.9.9-test/kernel/drivers/block/d.ko.zst": "module d",
			}, c)
			f, err := os.Open(deb)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dir := t.TempDir()
			k, err := Extract(f, dir, Limits{})
			if err != nil {
				t.Fatal(err)
			}
			if k.Version != "9.9.9-test" || k.Modules != 3 || k.Config != "" {
				t.Fatalf("%+v", k)
			}
			got, _ := os.ReadFile(filepath.Join(k.ModulesDir, "kernel/fs/a.ko"))
			if string(got) != "module a" {
				t.Errorf("a.ko = %q", got)
			}
			if _, err := os.Stat(filepath.Join(dir, "etc")); !os.IsNotExist(err) {
				t.Errorf("etc/ written: %v", err)
			}
		})
	}
}

func TestBadPackages(t *testing.T) {
	noKernel := buildDeb(t, map[string]string{"usr/share/doc/x/README": "hi"}, "xz")
	wrongModules := buildDeb(t, map[string]string{
		"boot/vmlinuz-1.0":            "k",
		"lib/modules/2.0/kernel/x.ko": "m",
	}, "gzip")
	real, _ := os.ReadFile(noKernel)
	cases := map[string][]byte{
		"random bytes":      bytes.Repeat([]byte{0x42, 0x17}, 4096),
		"empty":             nil,
		"no kernel inside":  real,
		"truncated package": real[:len(real)/2],
	}
	if b, err := os.ReadFile(wrongModules); err == nil {
		cases["modules of another version"] = b
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Extract(bytes.NewReader(data), t.TempDir(), Limits{})
			if !errors.Is(err, ErrNotPackage) {
				t.Fatalf("%v, want ErrNotPackage", err)
			}
			t.Log(err)
		})
	}
	t.Run("over the byte limit", func(t *testing.T) {
		deb := buildDeb(t, map[string]string{"boot/vmlinuz-1.0": strings.Repeat("k", 5000)}, "gzip")
		f, _ := os.Open(deb)
		defer f.Close()
		if _, err := Extract(f, t.TempDir(), Limits{MaxBytes: 4096}); err == nil || !strings.Contains(err.Error(), "exceed") {
			t.Fatalf("%v", err)
		}
	})
}
