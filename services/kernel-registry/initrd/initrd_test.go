package initrd

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// initBin is slipway-initrd, built once for the package's tests.
var initBin string

func TestMain(m *testing.M) {
	slipwayInitrd := testenv.Binary{Pkg: "./services/kernel-registry/cmd/slipway-initrd", Static: true}
	os.Exit(slipwayInitrd.Run(&initBin, m.Run))
}

// kernelFile is bin/kernel/name, which tools/fetch-kernel.sh fetches; the
// test is skipped without it.
func kernelFile(t *testing.T, name string) string {
	t.Helper()
	return testenv.RepoFile(t, "bin/kernel/"+name, "run tools/fetch-kernel.sh")
}

// debianModules unpacks the Debian package's modules with dpkg-deb (the
// deb package has its own test) and returns lib/modules/<version>.
func debianModules(t *testing.T) string {
	t.Helper()
	deb := kernelFile(t, "linux-image.deb")
	root := t.TempDir()
	testenv.Exec(t, "dpkg-deb", "-x", deb, root)
	dirs, _ := filepath.Glob(filepath.Join(root, "*lib", "modules", "*"))
	if len(dirs) != 1 {
		t.Fatalf("modules directories in the package: %v", dirs)
	}
	return dirs[0]
}

// entry is one cpio member read back.
type entry struct {
	mode      uint32
	rdevMajor uint32
	rdevMinor uint32
	data      []byte
}

// readCpio reads a gzip'd newc archive back, independently of the writer.
func readCpio(t *testing.T, b []byte) map[string]entry {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]entry{}
	align := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; ; {
		h := string(raw[off : off+110])
		if h[:6] != "070701" {
			t.Fatalf("bad cpio magic at %d: %q", off, h[:6])
		}
		field := func(i int) uint32 {
			v, err := strconv.ParseUint(h[6+8*i:14+8*i], 16, 32)
			if err != nil {
				t.Fatal(err)
			}
			return uint32(v)
		}
		size, nameSize := int(field(6)), int(field(11))
		name := string(raw[off+110 : off+110+nameSize-1])
		dataOff := align(off + 110 + nameSize)
		if name == "TRAILER!!!" {
			return out
		}
		out[name] = entry{mode: field(1), rdevMajor: field(9), rdevMinor: field(10), data: raw[dataOff : dataOff+size]}
		off = align(dataOff + size)
	}
}

func TestBuildDebian(t *testing.T) {
	mods := debianModules(t)
	var buf bytes.Buffer
	start := time.Now()
	res, err := Build(&buf, Options{ModulesDir: mods, Init: initBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd: %d bytes, %d modules in %s: %s; built in: %v; missing: %v",
		res.Bytes, len(res.Modules), time.Since(start).Round(time.Millisecond), strings.Join(res.Modules, " "), res.Builtin, res.Missing)
	if res.Bytes != int64(buf.Len()) {
		t.Errorf("Result.Bytes %d, wrote %d", res.Bytes, buf.Len())
	}
	pos := func(name string) int {
		i := slices.Index(res.Modules, name)
		if i < 0 {
			t.Fatalf("%s not in the initrd", name)
		}
		return i
	}
	// Load order: each after what it needs (hard and soft dependencies).
	for _, before := range [][2]string{
		{"virtio", "virtio_blk"}, {"virtio_ring", "virtio_pci"}, {"jbd2", "ext4"}, {"mbcache", "ext4"},
		{"crc32c_generic", "ext4"}, {"dm_mod", "dm_crypt"}, {"scsi_mod", "sd_mod"}, {"libata", "ahci"},
	} {
		if pos(before[0]) > pos(before[1]) {
			t.Errorf("%s is loaded after %s", before[0], before[1])
		}
	}
	for _, m := range DefaultModules {
		if m == "iso9660" {
			m = "isofs" // the module's name; iso9660 is its alias
		}
		pos(m) // Debian builds every default driver as a module
	}
	files := readCpio(t, buf.Bytes())
	init, ok := files["init"]
	if !ok || init.mode != 0o100755 {
		t.Fatalf("/init missing or mode %o", init.mode)
	}
	if want, _ := os.ReadFile(initBin); !bytes.Equal(init.data, want) {
		t.Error("/init is not the slipway-initrd binary")
	}
	if c := files["dev/console"]; c.mode != 0o020600 || c.rdevMajor != 5 || c.rdevMinor != 1 {
		t.Errorf("dev/console %+v", c)
	}
	list := strings.Fields(string(files[strings.TrimPrefix(ModuleList, "/")].data))
	if len(list) != len(res.Modules) {
		t.Fatalf("%s lists %d modules, the result %d", ModuleList, len(list), len(res.Modules))
	}
	for i, p := range list {
		f, ok := files[strings.TrimPrefix(p, "/")]
		if !ok || modName(p) != res.Modules[i] || !bytes.HasPrefix(f.data, []byte("\x7fELF")) {
			t.Errorf("listed module %s (%s) missing or not an ELF", p, res.Modules[i])
		}
	}
}

// TestModulesDepAndCompression builds from a tree the way an installed
// system has it: modules.dep, modules.builtin and .ko.xz/.ko.zst modules.
func TestModulesDepAndCompression(t *testing.T) {
	mods := debianModules(t)
	dir := filepath.Join(t.TempDir(), "6.1.0-test")
	copyModule := func(rel, ext string) string {
		data, err := os.ReadFile(filepath.Join(mods, rel))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, rel+ext)
		os.MkdirAll(filepath.Dir(dst), 0o755)
		args := map[string][]string{".xz": {"xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"}, ".zst": {"zstd", "-q", "-c"}}[ext]
		if args != nil {
			cmd := exec.Command(args[0], args[1:]...)
			cmd.Stdin = bytes.NewReader(data)
			if data, err = cmd.Output(); err != nil {
				t.Fatalf("%v: %v", args, err)
			}
		}
		if err := os.WriteFile(dst, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return rel + ext
	}
	blk := copyModule("kernel/drivers/block/virtio_blk.ko", ".xz")
	ring := copyModule("kernel/drivers/virtio/virtio_ring.ko", ".zst")
	dep := blk + ": " + ring + "\n" + ring + ":\n"
	os.WriteFile(filepath.Join(dir, "modules.dep"), []byte(dep), 0o644)
	os.WriteFile(filepath.Join(dir, "modules.builtin"), []byte("kernel/drivers/virtio/virtio.ko\nkernel/fs/ext4/ext4.ko\n"), 0o644)

	var buf bytes.Buffer
	res, err := Build(&buf, Options{ModulesDir: dir, Modules: []string{"virtio_blk", "ext4"}, Init: initBin})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Modules, []string{"virtio_ring", "virtio_blk"}) || !slices.Contains(res.Builtin, "ext4") {
		t.Fatalf("modules %v builtin %v", res.Modules, res.Builtin)
	}
	files := readCpio(t, buf.Bytes())
	orig, _ := os.ReadFile(filepath.Join(mods, "kernel/drivers/block/virtio_blk.ko"))
	if got := files["lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko"].data; !bytes.Equal(got, orig) {
		t.Errorf("virtio_blk.ko.xz was not stored decompressed (%d bytes, want %d)", len(got), len(orig))
	}

	// An explicit module the kernel lacks is an error; a default one is skipped.
	if _, err := Build(io.Discard, Options{ModulesDir: dir, Modules: []string{"no_such_driver"}, Init: initBin}); err == nil || !strings.Contains(err.Error(), "no_such_driver") {
		t.Errorf("missing module: %v", err)
	}
	res, err = Build(io.Discard, Options{ModulesDir: dir, Init: initBin})
	if err != nil || !slices.Contains(res.Missing, "xfs") {
		t.Errorf("default modules on a small tree: %+v %v", res, err)
	}
	// No init binary: the error says how to build one.
	if _, err := Build(io.Discard, Options{ModulesDir: dir, Init: filepath.Join(dir, "nope")}); !errors.Is(err, ErrNoInit) || !strings.Contains(err.Error(), "make build") {
		t.Errorf("no init: %v", err)
	}
	if _, err := Build(io.Discard, Options{ModulesDir: filepath.Join(dir, "nope"), Init: initBin}); err == nil {
		t.Error("a missing modules directory was accepted")
	}
}

// TestQEMUBoot boots Debian's kernel with the initrd under QEMU (TCG) from
// an ext4 root disk on virtio-blk: the initrd loads the modules, mounts
// the disk and runs its /.slipway/init, which prints a token and powers off.
func TestQEMUBoot(t *testing.T) {
	kernel := kernelFile(t, "vmlinuz")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not installed (make deps): ", err)
	}
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatal("busybox not installed (make deps: busybox-static): ", err)
	}
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Build(f, Options{ModulesDir: debianModules(t), Init: initBin})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("initrd %d bytes, %d modules", res.Bytes, len(res.Modules))

	root := filepath.Join(dir, "root")
	for _, d := range []string{"bin", ".slipway", "dev", "proc", "sys"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	copyFile(t, busybox, filepath.Join(root, "bin", "busybox"), 0o755)
	const token = "SLIPWAY-INITRD-TOKEN-7f3a"
	script := "#!/bin/busybox sh\n/bin/busybox echo " + token + " root=$(/bin/busybox awk '$2==\"/\"{print $1, $3, substr($4,1,2)}' /proc/mounts)\n/bin/busybox poweroff -f\n"
	if err := os.WriteFile(filepath.Join(root, ".slipway", "init"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	disk := filepath.Join(dir, "root.ext4")
	testenv.Exec(t, "mkfs.ext4", "-q", "-F", "-d", root, disk, "32M")

	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "512", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-drive", "file="+disk+",format=raw,if=virtio",
		"-append", "console=ttyS0 root=/dev/vda rw panic=-1")
	console := &timedBuffer{start: time.Now(), marks: map[string]time.Duration{}, watch: []string{token, "slipway-initrd: loaded"}}
	cmd.Stdout, cmd.Stderr = console, console
	err = cmd.Run()
	out := console.String()
	t.Logf("QEMU ran %s; token after %s (modules loaded after %s); console (slipway-initrd lines and the end):\n%s",
		time.Since(console.start).Round(time.Millisecond), console.marks[token].Round(time.Millisecond),
		console.marks["slipway-initrd: loaded"].Round(time.Millisecond), excerpt(out))
	if ctx.Err() != nil {
		t.Fatal("the VM did not power off within 240 s")
	}
	if err != nil {
		t.Fatalf("qemu: %v", err)
	}
	if !strings.Contains(out, token+" root=/dev/vda ext4 rw") {
		t.Fatalf("no token line with the root mount (/dev/vda ext4 rw) on the console")
	}
	if !strings.Contains(out, "reboot: Power down") || strings.Contains(out, "Kernel panic") || strings.Contains(out, "cannot boot") {
		t.Fatal("the VM did not power off cleanly")
	}
	for _, want := range []string{"slipway-initrd: loaded", "slipway-initrd: mounted /dev/vda (ext4, rw)", "slipway-initrd: starting /.slipway/init"} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}

// TestQEMUNoRoot: a root device that never appears ends in a clear message
// and a power-off, not a hang or a panic.
func TestQEMUNoRoot(t *testing.T) {
	if testing.Short() {
		testenv.Skip(t, "boots a VM")
	}
	kernel := kernelFile(t, "vmlinuz")
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not installed (make deps): ", err)
	}
	// No modules: the initrd only mounts and switches; /dev/vdz never comes.
	initrd := filepath.Join(t.TempDir(), "initrd.img")
	f, err := os.Create(initrd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(f, Options{Init: initBin}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 240*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", "console=ttyS0 root=/dev/vdz slipway.rootwait=3 panic=-1 quiet").CombinedOutput()
	t.Logf("console:\n%s", excerpt(string(out)))
	if ctx.Err() != nil || err != nil {
		t.Fatalf("qemu: %v (timeout: %v)", err, ctx.Err())
	}
	s := string(out)
	if !strings.Contains(s, "slipway-initrd: cannot boot: root device /dev/vdz did not appear within 3s") ||
		!strings.Contains(s, "slipway-initrd: powering off") || !strings.Contains(s, "reboot: Power down") {
		t.Fatal("no clear failure and power-off on the console")
	}
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, mode); err != nil {
		t.Fatal(err)
	}
}

// excerpt keeps the slipway-initrd lines and the last lines of a console.
func excerpt(out string) string {
	lines := strings.Split(strings.ReplaceAll(out, "\r", ""), "\n")
	var keep []string
	for i, l := range lines {
		if strings.Contains(l, "slipway-initrd") || i >= len(lines)-8 {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// timedBuffer records QEMU's console and when watched strings first appear.
type timedBuffer struct {
	buf   bytes.Buffer
	start time.Time
	watch []string
	marks map[string]time.Duration
}

func (b *timedBuffer) Write(p []byte) (int, error) {
	b.buf.Write(p)
	for _, w := range b.watch {
		if _, seen := b.marks[w]; !seen && bytes.Contains(b.buf.Bytes(), []byte(w)) {
			b.marks[w] = time.Since(b.start)
		}
	}
	return len(p), nil
}

func (b *timedBuffer) String() string { return b.buf.String() }
