package qemu

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBootToken boots the Debian kernel with a busybox initramfs that prints a token and
// powers off; the token must reach the console log and QEMU must exit on its own with the
// guest-shutdown reason.
func TestBootToken(t *testing.T) {
	needQEMU(t)
	kernel := kernelPath(t)
	token := "slipway-token-" + time.Now().Format("150405.000000")
	initrd := initramfs(t, "echo "+token+"\n/bin/busybox poweroff -f\n")
	dir := runDir(t)
	ctx := testCtx(t, bootTimeout+30*time.Second)
	vm, err := Start(ctx, Config{Name: "boot-token", Kernel: kernel, Initrd: initrd,
		Append: "console=ttyS0 panic=-1 loglevel=4", RunDir: dir, ImageDirs: []string{filepath.Dir(kernel), filepath.Dir(initrd)}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	if acc, err := ProbeOnce(ctx, ProbeConfig{}); err != nil || vm.Accel() != acc.Accel || vm.CPU() != acc.CPU {
		t.Fatalf("VM runs with %s -cpu %s; the probe chose %+v (%v)", vm.Accel(), vm.CPU(), acc, err)
	}
	waitConsole(t, vm, token, bootTimeout)
	select {
	case <-vm.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("QEMU did not exit after the guest powered off")
	}
	if err := vm.Wait(); err != nil {
		t.Fatalf("Wait = %v", err)
	}
	if r := vm.ExitReason(); r != "guest-shutdown" {
		t.Errorf("ExitReason = %q, want guest-shutdown", r)
	}
	if _, err := os.Stat(dir + "/qmp.sock"); !os.IsNotExist(err) {
		t.Errorf("QMP socket left: %v", err)
	}
	if _, err := vm.Status(ctx); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Status after exit = %v, want ErrExited", err)
	}
	assertNoQEMU(t, dir)
}

// TestControl drives a running guest over QMP: status, stop (the guest's ticking stops),
// cont (it resumes), powerdown (QEMU reports the ACPI event), quit.
func TestControl(t *testing.T) {
	needQEMU(t)
	kernel := kernelPath(t)
	initrd := initramfs(t, "echo guest-up\ni=0\nwhile :; do i=$((i+1)); echo tick-$i; /bin/busybox sleep 0.2; done\n")
	dir := runDir(t)
	ctx := testCtx(t, bootTimeout+60*time.Second)
	vm, err := Start(ctx, Config{Name: "control", Kernel: kernel, Initrd: initrd,
		Append: "console=ttyS0 panic=-1 loglevel=4", RunDir: dir, MemoryMiB: 192, ImageDirs: []string{filepath.Dir(kernel), filepath.Dir(initrd)}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	waitConsole(t, vm, "tick-3", bootTimeout)
	if st, err := vm.Status(ctx); err != nil || st != "running" {
		t.Fatalf("Status = %q, %v", st, err)
	}
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st, err := vm.Status(ctx); err != nil || st != "paused" {
		t.Fatalf("Status after stop = %q, %v", st, err)
	}
	size := func() int64 { st, _ := os.Stat(vm.ConsoleLog()); return st.Size() }
	time.Sleep(300 * time.Millisecond) // let the last output drain
	before := size()
	time.Sleep(2 * time.Second)
	if after := size(); after != before {
		t.Errorf("the paused guest wrote %d bytes", after-before)
	}
	if err := vm.Cont(ctx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for size() == before {
		if time.Now().After(deadline) {
			t.Fatal("the guest did not resume writing after cont")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := vm.Powerdown(ctx); err != nil {
		t.Fatal(err)
	}
	if !sawEvent(vm, "POWERDOWN", 10*time.Second) {
		t.Errorf("no POWERDOWN event after system_powerdown; events: %v", vm.recentEvents())
	}
	if err := vm.Quit(ctx, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	if r := vm.ExitReason(); r != "host-qmp-quit" {
		t.Errorf("ExitReason = %q, want host-qmp-quit", r)
	}
	assertNoQEMU(t, dir)
}

func sawEvent(vm *VM, name string, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		for _, e := range vm.recentEvents() {
			if e.Event == name {
				return true
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}
