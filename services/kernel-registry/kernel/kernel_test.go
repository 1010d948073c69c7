package kernel

import (
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"

	"github.com/slipway/slipway/pkg/testenv"
)

// debianKernel is tools/fetch-kernel.sh's bzImage (`make kernel`).
func debianKernel(t *testing.T) (path, version string) {
	t.Helper()
	path = testenv.RepoFile(t, "bin/kernel/vmlinuz", "run `make kernel` or tools/fetch-kernel.sh")
	v, err := os.ReadFile(filepath.Join(filepath.Dir(path), "version"))
	if err != nil {
		t.Fatalf("bin/kernel/version: %v", err)
	}
	return path, strings.TrimSpace(string(v))
}

func inspectFile(t *testing.T, path string) (Facts, error) {
	t.Helper()
	return Inspect(testenv.Open(t, path))
}

func TestDebianBzImage(t *testing.T) {
	path, version := debianKernel(t)
	f, err := inspectFile(t, path)
	if err != nil {
		t.Fatal(err)
	}
	if f.Format != FormatBzImage || f.Arch != ArchX86_64 || f.Version != version {
		t.Fatalf("facts %+v: want bzimage x86_64 %s", f, version)
	}
	if f.Compression != CompressionXZ { // Debian builds with CONFIG_KERNEL_XZ
		t.Errorf("compression %q, want xz", f.Compression)
	}
	if f.Firecracker || f.FirecrackerReason == "" {
		t.Errorf("a bzImage fits Firecracker? %v %q", f.Firecracker, f.FirecrackerReason)
	}
	t.Logf("bzImage: protocol %s, %s payload of %d bytes, %q", f.BootProtocol, f.Compression, f.PayloadLength, f.Banner)

	// The payload: Debian's vmlinux, an ELF with the PVH note.
	in, _ := testenv.Open(t, path)
	vmlinux := filepath.Join(t.TempDir(), "vmlinux")
	out, err := os.Create(vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	n, err := ExtractVmlinux(in, f.Size, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("extracted %d bytes in %s", n, time.Since(start).Round(time.Millisecond))
	v, err := inspectFile(t, vmlinux)
	if err != nil {
		t.Fatal(err)
	}
	if v.Format != FormatELF || v.Arch != ArchX86_64 || v.Version != version {
		t.Fatalf("vmlinux facts %+v", v)
	}
	wantPVH := configSays(t, filepath.Join(filepath.Dir(path), "config"), "CONFIG_PVH=y")
	if v.PVH != wantPVH || (v.PVH && v.PVHEntry == 0) {
		t.Errorf("pvh %v entry %#x; the config says CONFIG_PVH=y: %v", v.PVH, v.PVHEntry, wantPVH)
	}
	if !v.Firecracker {
		t.Errorf("the vmlinux does not fit Firecracker: %s", v.FirecrackerReason)
	}
	if v.Config != configSays(t, filepath.Join(filepath.Dir(path), "config"), "CONFIG_IKCONFIG=y") {
		t.Errorf("config %v disagrees with the kernel's config file", v.Config)
	}
	t.Logf("vmlinux: pvh %v entry %#x, firecracker %v, config %v", v.PVH, v.PVHEntry, v.Firecracker, v.Config)
}

// configSays reports whether the kernel's config file has line.
func configSays(t *testing.T, path, line string) bool {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		testenv.Skip(t, "no kernel config at %s: %v", path, err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l == line {
			return true
		}
	}
	return false
}

func TestTruncatedBzImage(t *testing.T) {
	path, _ := debianKernel(t)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	// Debian's signed bzImage ends with a signature the header does not
	// count; cut 2000 bytes, the kernel itself is short.
	for _, n := range []int{0x210, 0x260, 4096, len(data) / 2, len(data) - 2000} {
		_, err := Inspect(bytes.NewReader(data[:n]), int64(n))
		if !errors.Is(err, ErrTruncated) {
			t.Errorf("%d of %d bytes: %v, want a truncation error", n, len(data), err)
			continue
		}
		if n > 0x270 && !strings.Contains(err.Error(), "truncated bzImage") {
			t.Errorf("%d bytes: %v", n, err)
		}
	}
	// A payload whose second half is lost (zeroed) fails while
	// decompressing, with no vmlinux.
	f, err := Inspect(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	cut := append([]byte(nil), data...)
	clear(cut[f.PayloadOffset+f.PayloadLength/2 : f.PayloadOffset+f.PayloadLength])
	if _, err := ExtractVmlinux(bytes.NewReader(cut), int64(len(cut)), discard{}); !errors.Is(err, ErrCompression) {
		t.Errorf("half a payload: %v", err)
	} else {
		t.Log(err)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

func TestNotAKernel(t *testing.T) {
	random := make([]byte, 1<<20)
	rand.Read(random)
	busybox, _ := os.ReadFile("/bin/busybox")
	cases := map[string][]byte{
		"empty":  nil,
		"random": random,
		"text":   []byte("#!/bin/sh\necho hello\n"),
	}
	if len(busybox) > 0 {
		cases["an x86_64 program (busybox)"] = busybox
	}
	for name, data := range cases {
		_, err := Inspect(bytes.NewReader(data), int64(len(data)))
		if !errors.Is(err, ErrNotKernel) {
			t.Errorf("%s: %v, want ErrNotKernel", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestOtherArchitectures(t *testing.T) {
	// An arm64 Image header (Documentation/arch/arm64/booting.rst).
	arm64 := make([]byte, 64<<10)
	copy(arm64, []byte{0x4d, 0x5a, 0, 0x91})         // code0: the "MZ" of an EFI-stub kernel
	binary.LittleEndian.PutUint64(arm64[8:], 0)      // text_offset
	binary.LittleEndian.PutUint64(arm64[16:], 1<<24) // image_size
	binary.LittleEndian.PutUint64(arm64[24:], 0xa)   // flags: LE, 4K pages
	copy(arm64[0x38:], "ARM\x64")
	_, err := Inspect(bytes.NewReader(arm64), int64(len(arm64)))
	var ae *ArchError
	if !errors.As(err, &ae) || ae.Arch != "aarch64" || !strings.Contains(err.Error(), "aarch64") {
		t.Fatalf("arm64 Image: %v", err)
	}
	t.Log(err)

	// An aarch64 ELF vmlinux.
	elf := syntheticELF(t, elfOptions{machine: 183, pvh: true})
	if _, err := Inspect(bytes.NewReader(elf), int64(len(elf))); !errors.As(err, &ae) || ae.Arch != "aarch64" {
		t.Fatalf("aarch64 ELF: %v", err)
	}
	// A 32-bit bzImage (no XLF_KERNEL_64).
	bz := syntheticBzImage(t, syntheticELF(t, elfOptions{}), CompressionGzip)
	binary.LittleEndian.PutUint16(bz[offXLoadFlags:], 0)
	if _, err := Inspect(bytes.NewReader(bz), int64(len(bz))); !errors.As(err, &ae) || ae.Arch != "i386" {
		t.Fatalf("32-bit bzImage: %v", err)
	}
}

func TestSyntheticELF(t *testing.T) {
	config := []byte("CONFIG_PVH=y\nCONFIG_VIRTIO_BLK=y\n")
	data := syntheticELF(t, elfOptions{pvh: true, config: config})
	f, err := Inspect(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	if f.Format != FormatELF || f.Version != "9.8.7-slipway" || !f.PVH || f.PVHEntry != 0x1000123 || !f.Firecracker || !f.Config {
		t.Fatalf("facts %+v", f)
	}
	text, err := ConfigText(bytes.NewReader(data), f)
	if err != nil || !bytes.Equal(text, config) {
		t.Fatalf("config %q %v", text, err)
	}
	// Without the note and the config.
	data = syntheticELF(t, elfOptions{})
	if f, err = Inspect(bytes.NewReader(data), int64(len(data))); err != nil || f.PVH || f.Config {
		t.Fatalf("facts %+v %v", f, err)
	}
	if _, err := ConfigText(bytes.NewReader(data), f); !errors.Is(err, ErrNoConfig) {
		t.Fatalf("config of a kernel without one: %v", err)
	}
	// Cut before its last segment's end.
	if _, err := Inspect(bytes.NewReader(data[:len(data)-10]), int64(len(data)-10)); !errors.Is(err, ErrTruncated) {
		t.Fatalf("truncated ELF: %v", err)
	}
}

// TestCompressions builds a bzImage with each payload compression the
// kernel build can use, with the same tools and appended size, and
// extracts it.
func TestCompressions(t *testing.T) {
	elf := syntheticELF(t, elfOptions{pvh: true, filler: 3 << 20})
	for _, c := range []Compression{CompressionGzip, CompressionXZ, CompressionZstd, CompressionLZ4, CompressionLZMA, CompressionBzip2} {
		t.Run(string(c), func(t *testing.T) {
			bz := syntheticBzImage(t, elf, c)
			f, err := Inspect(bytes.NewReader(bz), int64(len(bz)))
			if err != nil {
				t.Fatal(err)
			}
			if f.Compression != c || f.Version != "9.8.7-slipway" || f.Arch != ArchX86_64 {
				t.Fatalf("facts %+v", f)
			}
			var out bytes.Buffer
			n, err := ExtractVmlinux(bytes.NewReader(bz), int64(len(bz)), &out)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(elf)) || !bytes.Equal(out.Bytes(), elf) {
				t.Fatalf("extracted %d bytes, differ from the %d-byte ELF", n, len(elf))
			}
			// A flipped byte in the middle of the payload is caught by the
			// formats that carry a checksum (lz4's legacy frame and lzma
			// have none).
			bad := append([]byte(nil), bz...)
			bad[f.PayloadOffset+f.PayloadLength/2] ^= 0x55
			_, err = ExtractVmlinux(bytes.NewReader(bad), int64(len(bad)), discard{})
			if err == nil && c != CompressionLZ4 && c != CompressionLZMA {
				t.Error("a corrupt payload extracted without error")
			}
			t.Logf("corrupt payload: %v", err)
		})
	}
}

type elfOptions struct {
	machine uint16 // default x86_64
	pvh     bool
	config  []byte
	filler  int // bytes of x86-like code, so BCJ has calls to undo
}

// syntheticELF builds a minimal x86_64 ELF kernel: a loadable segment with
// the version banner (and IKCONFIG data), and a note segment with the Xen
// PVH entry.
func syntheticELF(t *testing.T, o elfOptions) []byte {
	t.Helper()
	if o.machine == 0 {
		o.machine = 62
	}
	var body bytes.Buffer
	body.WriteString("\x00Linux version 9.8.7-slipway (test@slipway) #1 SMP PREEMPT_DYNAMIC\n\x00")
	if o.config != nil {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(o.config)
		zw.Close()
		body.WriteString("IKCFG_ST")
		body.Write(gz.Bytes())
		body.WriteString("IKCFG_ED")
	}
	for i := 0; body.Len() < o.filler; i++ {
		// CALL rel32 and JMP rel32 among other bytes.
		body.Write([]byte{0x55, 0x48, 0x89, 0xe5, 0xe8, byte(i), byte(i >> 8), 0, 0, 0xe9, byte(-i), 0xff, 0xff, 0xff, 0x5d, 0xc3})
	}
	var note bytes.Buffer
	if o.pvh {
		binary.Write(&note, binary.LittleEndian, []uint32{4, 4, xenNotePhys32Entry})
		note.WriteString("Xen\x00")
		binary.Write(&note, binary.LittleEndian, uint32(0x1000123))
	}
	const ehsize, phsize = 64, 56
	phnum := 1
	if o.pvh {
		phnum = 2
	}
	bodyOff := ehsize + phsize*phnum
	noteOff := bodyOff + body.Len()
	var b bytes.Buffer
	b.Write([]byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	le := binary.LittleEndian
	binary.Write(&b, le, uint16(2))         // ET_EXEC
	binary.Write(&b, le, o.machine)         // e_machine
	binary.Write(&b, le, uint32(1))         // e_version
	binary.Write(&b, le, uint64(0x1000000)) // e_entry
	binary.Write(&b, le, uint64(ehsize))    // e_phoff
	binary.Write(&b, le, uint64(0))         // e_shoff
	binary.Write(&b, le, uint32(0))         // e_flags
	binary.Write(&b, le, []uint16{ehsize, phsize, uint16(phnum), 64, 0, 0})
	prog := func(typ, flags uint32, off, size, align uint64) {
		binary.Write(&b, le, typ)
		binary.Write(&b, le, flags)
		binary.Write(&b, le, []uint64{off, 0x1000000 + off, off, size, size, align})
	}
	prog(1, 5, uint64(bodyOff), uint64(body.Len()), 4096) // PT_LOAD
	if o.pvh {
		prog(4, 4, uint64(noteOff), uint64(note.Len()), 4) // PT_NOTE
	}
	b.Write(body.Bytes())
	b.Write(note.Bytes())
	return b.Bytes()
}

// syntheticBzImage wraps vmlinux in a bzImage setup header with its payload
// compressed by c the way the kernel build does (scripts/Makefile.lib:
// the tool's output, then the size appended for all but gzip).
func syntheticBzImage(t *testing.T, vmlinux []byte, c Compression) []byte {
	t.Helper()
	payload := compress(t, c, vmlinux)
	if c != CompressionGzip {
		payload = binary.LittleEndian.AppendUint32(payload, uint32(len(vmlinux)))
	}
	const setupSects = 1
	img := make([]byte, (setupSects+1)*512+0x100)
	img[offSetupSects] = setupSects
	img[offBootFlag], img[offBootFlag+1] = 0x55, 0xaa
	copy(img[offHeaderMagic:], "HdrS")
	binary.LittleEndian.PutUint16(img[offVersion:], 0x020f)
	binary.LittleEndian.PutUint16(img[offKernelVersion:], 0x100)
	copy(img[0x300:], "9.8.7-slipway (test@slipway) #1 SMP PREEMPT_DYNAMIC\x00")
	img[offLoadFlags] = loadedHigh
	binary.LittleEndian.PutUint16(img[offXLoadFlags:], xlfKernel64|0x02)
	binary.LittleEndian.PutUint32(img[offPayloadOffset:], 0x100)
	binary.LittleEndian.PutUint32(img[offPayloadLength:], uint32(len(payload)))
	return append(img, payload...)
}

// compress runs the compressor the kernel build runs for c; lz4 and zstd
// use the Go encoders (lz4 in the legacy frame the kernel's `lz4 -l` writes).
func compress(t *testing.T, c Compression, data []byte) []byte {
	t.Helper()
	var out bytes.Buffer
	switch c {
	case CompressionGzip:
		zw, _ := gzip.NewWriterLevel(&out, gzip.BestCompression)
		zw.Write(data)
		zw.Close()
		return out.Bytes()
	case CompressionZstd:
		zw, _ := zstd.NewWriter(&out, zstd.WithEncoderLevel(zstd.SpeedBestCompression))
		zw.Write(data)
		zw.Close()
		return out.Bytes()
	case CompressionLZ4:
		zw := lz4.NewWriter(&out)
		if err := zw.Apply(lz4.LegacyOption(true)); err != nil {
			t.Fatal(err)
		}
		zw.Write(data)
		zw.Close()
		return out.Bytes()
	}
	args := map[Compression][]string{
		CompressionXZ:    {"xz", "--format=xz", "--check=crc32", "--x86", "--lzma2=dict=1MiB", "-c"},
		CompressionLZMA:  {"xz", "--format=lzma", "-6", "-c"},
		CompressionBzip2: {"bzip2", "-9", "-c"},
	}[c]
	testenv.Program(t, args[0], "make deps")
	cmd := exec.Command(args[0], args[1:]...)
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(data), &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v: %v %s", args, err, stderr.Bytes())
	}
	return out.Bytes()
}
