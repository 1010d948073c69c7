package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/services/launcher/qemu/qemutest"
)

// A KVM that aborts, as nested KVM does on -cpu host, is passed over with
// QEMU's own error; TCG is chosen.
func TestProbeAbortingKVM(t *testing.T) {
	needQEMU(t)
	bin := qemutest.Wrapper(t, "kvm", qemutest.AbortMSR)
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Candidate != (Candidate{AccelTCG, CPUBase}) {
		t.Fatalf("chose %v, want tcg", acc.Candidate)
	}
	if len(acc.PassedOver) != 2 || acc.PassedOver[0].Candidate != (Candidate{AccelKVM, CPUHost}) ||
		acc.PassedOver[1].Candidate != (Candidate{AccelKVM, CPUBase}) {
		t.Fatalf("passed over %v, want kvm -cpu host then kvm -cpu qemu64", acc.PassedOver)
	}
	for _, r := range acc.PassedOver {
		if r.Reason != "qemu aborted: failed to set MSR 0x10a to 0x69" {
			t.Errorf("reason %q", r.Reason)
		}
	}
	if e := acc.Explain(); !strings.Contains(e, "passed over kvm -cpu host: qemu aborted: failed to set MSR 0x10a") {
		t.Errorf("Explain() = %q", e)
	}
}

// A KVM whose guest hangs silently (QEMU runs, prints nothing) is passed
// over once the deadline passes, and the probe does not wait longer.
func TestProbeHangingKVM(t *testing.T) {
	needQEMU(t)
	bin := qemutest.Wrapper(t, "kvm", `exec sleep 600`)
	start := time.Now()
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Accel != AccelTCG || len(acc.PassedOver) != 2 {
		t.Fatalf("chose %+v", acc)
	}
	for _, r := range acc.PassedOver {
		if r.Reason != "the guest printed nothing within 3s (it hangs)" {
			t.Errorf("reason %q", r.Reason)
		}
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("probe took %v with two 3s deadlines and a working TCG", d)
	}
	if out, _ := exec.Command("pgrep", "-f", bin).Output(); len(out) > 0 {
		t.Errorf("hung probes left behind: %s", out)
	}
}

// The guest's line carries a fresh nonce: a QEMU that prints a plausible
// line without running the guest is not believed, and one that exits with
// an error is named with its status.
func TestProbeLineMustComeFromTheGuest(t *testing.T) {
	needQEMU(t)
	bin := qemutest.Wrapper(t, "kvm", `echo "slipway-probe 0000000000000000 long mode reached"; exit 0`)
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Accel != AccelTCG || len(acc.PassedOver) != 2 ||
		acc.PassedOver[0].Reason != "qemu exited with status 0 before the guest printed its line" {
		t.Fatalf("chose %+v", acc)
	}
	bin = qemutest.Wrapper(t, "kvm", `echo "qemu-system-x86_64: -accel kvm: Could not access KVM kernel module: Permission denied" >&2; exit 1`)
	acc, err = Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin})
	if err != nil {
		t.Fatal(err)
	}
	if want := "qemu exited with status 1: -accel kvm: Could not access KVM kernel module: Permission denied"; acc.PassedOver[0].Reason != want {
		t.Errorf("reason %q, want %q", acc.PassedOver[0].Reason, want)
	}
}

// A forced accelerator that fails is an error naming why, never a silent
// fallback to another.
func TestProbeForcedKVMFails(t *testing.T) {
	needQEMU(t)
	bin := qemutest.Wrapper(t, "kvm", qemutest.AbortMSR)
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin, Force: AccelKVM})
	if !errors.Is(err, ErrNoAccelerator) {
		t.Fatalf("forced kvm: %+v, %v; want ErrNoAccelerator", acc, err)
	}
	for _, want := range []string{"kvm -cpu host: qemu aborted: failed to set MSR 0x10a", "kvm -cpu qemu64: qemu aborted"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "tcg") {
		t.Errorf("forced kvm tried tcg: %v", err)
	}
	if _, err := Probe(context.Background(), ProbeConfig{Force: "hvf"}); err == nil || !strings.Contains(err.Error(), `"hvf"`) {
		t.Errorf("force hvf: %v", err)
	}
}

// TCG always exists: forced, it boots the real probe guest through real,
// protected and long mode.
func TestProbeTCG(t *testing.T) {
	needQEMU(t)
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Force: AccelTCG, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Candidate != (Candidate{AccelTCG, CPUBase}) || len(acc.PassedOver) != 0 {
		t.Fatalf("%+v", acc)
	}
}

// The probe guest runs under the same seccomp sandbox as VMs, with an empty environment:
// the wrapper records QEMU's arguments and environment, and the guest still prints its line.
func TestProbeSandboxed(t *testing.T) {
	needQEMU(t)
	t.Setenv("SLIPWAY_TEST_SECRET", "must-not-reach-qemu")
	log := filepath.Join(t.TempDir(), "args")
	b := probeTCG(t, `echo "$*" > `+log+`; env >> `+log, log, nil)
	if !strings.Contains(string(b), " -sandbox "+SandboxArg+" ") {
		t.Errorf("the probe's command line lacks -sandbox %s: %s", SandboxArg, b)
	}
	if strings.Contains(string(b), "SLIPWAY_TEST_SECRET") {
		t.Errorf("the probe's QEMU got this process's environment: %s", b)
	}
}

// ProbeOnce answers a second time from memory.
func TestProbeOnceRemembers(t *testing.T) {
	needQEMU(t)
	ctx := testCtx(t, 2*time.Minute)
	first, err := ProbeOnce(ctx, ProbeConfig{})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	again, err := ProbeOnce(ctx, ProbeConfig{Binary: DefaultBinary, Timeout: DefaultProbeTimeout})
	if err != nil || again.Candidate != first.Candidate || time.Since(start) > 100*time.Millisecond {
		t.Fatalf("second ProbeOnce: %+v %v after %v; first %+v", again, err, time.Since(start), first)
	}
	t.Logf("this machine: %s", first.Explain())
}

func TestProbeROM(t *testing.T) {
	rom, err := probeROM("hello\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(rom) != 64<<10 {
		t.Fatalf("ROM is %d bytes", len(rom))
	}
	// The reset vector jumps to offset 0 of the segment.
	if rom[0xfff0] != 0xe9 || 0xfff3+int(binary.LittleEndian.Uint16(rom[0xfff1:]))&0xffff != 0x10000 {
		t.Errorf("reset vector % x", rom[0xfff0:0xfff3])
	}
	if !bytes.Contains(rom, []byte{0xb0, 'h', 0xee, 0xb0, 'e', 0xee}) {
		t.Error("the line is not written out byte by byte")
	}
	for _, bad := range []string{"a\x00b\n", "two\nlines\n", "tab\there\n", "é\n"} {
		if _, err := probeROM(bad); err == nil {
			t.Errorf("probeROM(%q) accepted", bad)
		}
	}
}

// Under a root launcher the probe runs QEMU as the VMs' unprivileged uid, so it proves
// what their QEMU can use; the guest still prints its line.
func TestProbeRunsAsTheVMsUser(t *testing.T) {
	needQEMU(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run QEMU as another uid")
	}
	log := filepath.Join(testenv.OpenDir(t, "probe-user-", 0o777), "id")
	b := probeTCG(t, `id -u > `+log, log, &User{UID: 50321, GID: 50321})
	if got := strings.TrimSpace(string(b)); got != "50321" {
		t.Fatalf("the probe's QEMU ran as uid %s, want 50321", got)
	}
}

// An unprivileged QEMU gets /dev/kvm's group when that group may read and write it, and
// no group otherwise.
func TestKVMGroups(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown a file to another group")
	}
	dev := filepath.Join(t.TempDir(), "kvm")
	if err := os.WriteFile(dev, nil, 0o660); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		gid  int
		mode os.FileMode
		want []uint32
	}{{108, 0o660, []uint32{108}}, {108, 0o666, []uint32{108}}, {108, 0o640, []uint32{}}, {0, 0o660, []uint32{}}} {
		if err := os.Chown(dev, 0, c.gid); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(dev, c.mode); err != nil {
			t.Fatal(err)
		}
		if got := kvmGroups(dev); !slices.Equal(got, c.want) {
			t.Errorf("gid %d mode %v: groups %v, want %v", c.gid, c.mode, got, c.want)
		}
	}
	if got := kvmGroups(filepath.Join(t.TempDir(), "none")); len(got) != 0 {
		t.Errorf("no device: %v", got)
	}
}

// probeTCG probes TCG as user (nil: this process's) through a wrapper
// that runs script first, and returns what the script wrote to log.
func probeTCG(t *testing.T, script, log string, user *User) []byte {
	t.Helper()
	bin := qemutest.Wrapper(t, "tcg", script)
	acc, err := Probe(testCtx(t, time.Minute), ProbeConfig{Binary: bin, Force: AccelTCG, Timeout: 30 * time.Second, User: user})
	if err != nil {
		t.Fatal(err)
	}
	if acc.Accel != AccelTCG {
		t.Fatalf("%+v", acc)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
