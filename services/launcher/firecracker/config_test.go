package firecracker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// fakeELF writes a minimal 64-bit little-endian ELF header for machine and type.
func fakeELF(t *testing.T, dir, name string, machine, typ uint16) string {
	h := make([]byte, 64)
	copy(h, "\x7fELF")
	h[4], h[5], h[6] = 2, 1, 1
	binary.LittleEndian.PutUint16(h[16:], typ)
	binary.LittleEndian.PutUint16(h[18:], machine)
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, h, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func write(t *testing.T, dir, name string, data []byte) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigJSON(t *testing.T) {
	dir := t.TempDir()
	k := fakeELF(t, dir, "vmlinux", emX86_64, etExec)
	initrd := write(t, dir, "initrd", []byte("x"))
	root := write(t, dir, "root.img", make([]byte, 4096))
	data := write(t, dir, "data.img", make([]byte, 4096))
	c, err := Config(Kernel{Path: k, InitrdPath: initrd, Format: "elf", Arch: "x86_64"},
		[]Drive{{Path: root, Root: true}, {Path: data, ReadOnly: true, Format: "raw"}},
		2, 256, "console=ttyS0 root=/dev/vda", NIC{HostDevName: "tap0", GuestMAC: "02:00:00:00:00:01"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.JSON()
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"boot-source": map[string]any{"kernel_image_path": k, "boot_args": "console=ttyS0 root=/dev/vda", "initrd_path": initrd},
		"drives": []any{
			map[string]any{"drive_id": "rootfs", "path_on_host": root, "is_root_device": true, "is_read_only": false},
			map[string]any{"drive_id": "drive1", "path_on_host": data, "is_root_device": false, "is_read_only": true},
		},
		"machine-config":     map[string]any{"vcpu_count": 2.0, "mem_size_mib": 256.0, "smt": false},
		"network-interfaces": []any{map[string]any{"iface_id": "eth0", "host_dev_name": "tap0", "guest_mac": "02:00:00:00:00:01"}},
	}
	gb, _ := json.Marshal(got)
	wb, _ := json.Marshal(want)
	if !bytes.Equal(gb, wb) {
		t.Fatalf("config\n%s\nwant\n%s", gb, wb)
	}
	p := filepath.Join(dir, "config.json")
	if err := c.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Errorf("config mode %v", st.Mode().Perm())
	}
}

func TestConfigDefaults(t *testing.T) {
	dir := t.TempDir()
	c, err := Config(Kernel{Path: fakeELF(t, dir, "vmlinux", emX86_64, etExec)}, nil, 1, 128, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.BootSource.BootArgs != DefaultBootArgs || c.BootSource.InitrdPath != "" || len(c.Drives) != 0 {
		t.Fatalf("defaults: %+v", c)
	}
	b, _ := c.JSON()
	if !strings.Contains(string(b), `"drives": []`) || strings.Contains(string(b), "network-interfaces") {
		t.Fatalf("JSON: %s", b)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	elfK := fakeELF(t, dir, "vmlinux", emX86_64, etExec)
	arm := fakeELF(t, dir, "arm", emAArch64, etExec)
	mod := fakeELF(t, dir, "mod.ko", emX86_64, 1)
	bz := make([]byte, 0x300)
	copy(bz[0x202:], "HdrS")
	bzImage := write(t, dir, "vmlinuz", bz)
	text := write(t, dir, "notes.txt", []byte("hello, not a kernel"))
	raw := write(t, dir, "raw.img", make([]byte, 4096))
	qcow := write(t, dir, "d.qcow2", append([]byte("QFI\xfb"), make([]byte, 100)...))
	luks := write(t, dir, "d.luks", append([]byte("LUKS\xba\xbe"), make([]byte, 100)...))
	ok := Kernel{Path: elfK}
	for _, tc := range []struct {
		k      Kernel
		drives []Drive
		vcpus  int
		mem    int64
		want   string
	}{
		{Kernel{Path: bzImage}, nil, 1, 128, "is a bzImage"},
		{Kernel{Path: elfK, Format: "bzimage"}, nil, 1, 128, "is a bzImage"},
		{Kernel{Path: elfK, Arch: "aarch64"}, nil, 1, 128, "is for aarch64, not x86_64"},
		{Kernel{Path: elfK, Unfit: "compressed"}, nil, 1, 128, "does not fit Firecracker: compressed"},
		{Kernel{Path: arm}, nil, 1, 128, "is for aarch64, not x86_64"},
		{Kernel{Path: mod}, nil, 1, 128, "not an executable"},
		{Kernel{Path: text}, nil, 1, 128, "is not an ELF vmlinux"},
		{Kernel{Path: filepath.Join(dir, "none")}, nil, 1, 128, "no such file"},
		{Kernel{Path: elfK, InitrdPath: filepath.Join(dir, "none")}, nil, 1, 128, "initrd:"},
		{ok, nil, 0, 128, "vcpu_count 0 must be 1 to 32"},
		{ok, nil, 33, 128, "vcpu_count 33 must be 1 to 32"},
		{ok, nil, 1, 64, "mem_size_mib 64 is below 128"},
		{ok, []Drive{{Path: qcow}}, 1, 128, "is a qcow2 image"},
		{ok, []Drive{{Path: luks}}, 1, 128, "is a LUKS image"},
		{ok, []Drive{{Path: raw, Format: "qcow2"}}, 1, 128, "format qcow2: Firecracker reads raw images only"},
		{ok, []Drive{{Path: raw, Root: true}, {Path: raw, Root: true, ID: "r2"}}, 1, 128, "2 drives are root devices"},
		{ok, []Drive{{Path: raw, ID: "a"}, {Path: raw, ID: "a"}}, 1, 128, "drive_id a is used twice"},
		{ok, []Drive{{Path: raw, ID: "a-b"}}, 1, 128, `drive_id "a-b"`},
	} {
		_, err := Config(tc.k, tc.drives, tc.vcpus, tc.mem, "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Config(%+v, %+v, %d, %d) = %v, want %q", tc.k, tc.drives, tc.vcpus, tc.mem, err, tc.want)
		}
	}
	// Several problems are reported together.
	_, err := Config(Kernel{Path: text}, []Drive{{Path: qcow}}, 0, 1, "")
	for _, want := range []string{"not an ELF", "vcpu_count 0", "mem_size_mib 1", "qcow2"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined error %v lacks %q", err, want)
		}
	}
	if _, err := Config(ok, nil, 1, 128, "", NIC{GuestMAC: "zz"}); err == nil || !strings.Contains(err.Error(), "host_dev_name") || !strings.Contains(err.Error(), `guest_mac "zz"`) {
		t.Errorf("NIC errors: %v", err)
	}
}

// TestRealKernel checks the ELF vmlinux inside bin/kernel/vmlinuz (Debian's bzImage)
// fits, and the bzImage does not.
func TestRealKernel(t *testing.T) {
	bz := testenv.RepoFile(t, "bin/kernel/vmlinuz", "run tools/fetch-kernel.sh")
	data, err := os.ReadFile(bz)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckKernel(bz); err == nil || !strings.Contains(err.Error(), "bzImage") {
		t.Errorf("CheckKernel(bzImage) = %v", err)
	}
	i := bytes.Index(data, []byte("\xfd7zXZ\x00"))
	xz, lerr := exec.LookPath("xz")
	if i < 0 || lerr != nil {
		testenv.Skip(t, "cannot extract the vmlinux here (xz payload found: %v, xz: %v)", i >= 0, lerr)
	}
	out := filepath.Join(t.TempDir(), "vmlinux")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(xz, "-dc", "--single-stream")
	cmd.Stdin, cmd.Stdout = bytes.NewReader(data[i:]), f
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := CheckKernel(out); err != nil {
		t.Fatalf("CheckKernel(vmlinux) = %v", err)
	}
	t.Run("boot", func(t *testing.T) { bootVmlinux(t, out) })
}

// bootVmlinux boots the kernel on Firecracker where it can run; it has no root disk, so
// the kernel panics and Firecracker exits: the console must show the kernel started.
func bootVmlinux(t *testing.T, vmlinux string) {
	if _, err := Available(""); err != nil {
		testenv.Skip(t, "Firecracker cannot run here: %v", err)
	}
	c, err := Config(Kernel{Path: vmlinux}, nil, 1, 256, DefaultBootArgs)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := Boot(ctx, c, BootOptions{RunDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Kill()
	deadline := time.Now().Add(90 * time.Second)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(filepath.Join(dir, "console.log"))
		if bytes.Contains(b, []byte("Linux version")) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "console.log"))
	t.Fatalf("no kernel banner on the console:\n%s", b)
}

func TestBootUnavailable(t *testing.T) {
	if _, err := Available(""); err == nil {
		testenv.Skip(t, "Firecracker can run here: nothing to refuse")
	}
	dir := t.TempDir()
	c := &VMConfig{BootSource: BootSource{KernelImagePath: fakeELF(t, dir, "vmlinux", emX86_64, etExec)},
		MachineConfig: MachineConfig{VcpuCount: 1, MemSizeMiB: 128}}
	_, err := Boot(context.Background(), c, BootOptions{RunDir: dir})
	if err == nil || !(strings.Contains(err.Error(), "no firecracker binary") || strings.Contains(err.Error(), "needs KVM")) {
		t.Fatalf("Boot = %v", err)
	}
}
