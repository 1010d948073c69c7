package qemu

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestPVHBoot boots the uncompressed ELF vmlinux inside bin/kernel/vmlinuz through its
// PVH entry: QEMU (≥ 4.0) loads an ELF -kernel through the XEN_ELFNOTE_PHYS32_ENTRY note
// and would refuse an ELF without it, so a boot proves the PVH path.
func TestPVHBoot(t *testing.T) {
	needQEMU(t)
	vmlinux := extractVmlinux(t, kernelPath(t))
	if !hasPVHNote(t, vmlinux) {
		testenv.Skip(t, "%s has no PVH note (XEN_ELFNOTE_PHYS32_ENTRY): the kernel was built without CONFIG_PVH", vmlinux)
	}
	token := "pvh-token-" + time.Now().Format("150405.000000")
	initrd := initramfs(t, "echo "+token+"\n/bin/busybox poweroff -f\n")
	dir := runDir(t)
	ctx := testCtx(t, bootTimeout+30*time.Second)
	vm, err := Start(ctx, Config{Name: "pvh", Kernel: vmlinux, Initrd: initrd,
		Append: "console=ttyS0 panic=-1 loglevel=4", RunDir: dir,
		ImageDirs: []string{filepath.Dir(vmlinux), filepath.Dir(initrd)}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	waitConsole(t, vm, token, bootTimeout)
	if err := vm.Wait(); err != nil {
		t.Fatal(err)
	}
	assertNoQEMU(t, dir)
}

// extractVmlinux decompresses the payload of an xz-compressed bzImage (Debian's) as the
// kernel's scripts/extract-vmlinux does: from the xz magic, one stream.
func extractVmlinux(t *testing.T, bzImage string) string {
	t.Helper()
	xz := testenv.Program(t, "xz", "it extracts the vmlinux (make deps)")
	data, err := os.ReadFile(bzImage)
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.Index(data, []byte("\xfd7zXZ\x00"))
	if i < 0 {
		testenv.Skip(t, "%s has no xz payload (another compression): not extracted here", bzImage)
	}
	out := filepath.Join(t.TempDir(), "vmlinux")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(xz, "-dc", "--single-stream")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(data[i:]), f, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("xz: %v %s", err, stderr.String())
	}
	return out
}

// hasPVHNote looks for the Xen ELF note of type 18 (XEN_ELFNOTE_PHYS32_ENTRY).
func hasPVHNote(t *testing.T, path string) bool {
	f, err := elf.Open(path)
	if err != nil {
		t.Fatalf("%s is not an ELF file: %v", path, err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		for len(b) >= 12 {
			nsz, dsz, typ := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:]), binary.LittleEndian.Uint32(b[8:])
			name := b[12:min(len(b), 12+int(nsz))]
			if bytes.Equal(bytes.TrimRight(name, "\x00"), []byte("Xen")) && typ == 18 {
				return true
			}
			next := 12 + int((nsz+3)&^3) + int((dsz+3)&^3)
			if next > len(b) {
				break
			}
			b = b[next:]
		}
	}
	return false
}
