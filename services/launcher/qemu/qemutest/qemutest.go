// Package qemutest makes QEMU fail for real in tests: a wrapper script that
// runs a shell fragment for one accelerator and the real QEMU for the rest,
// so the probe meets a real process that aborts, hangs or lies.
package qemutest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// AbortMSR is what nested KVM does on -cpu host: QEMU's own error line, then
// SIGABRT.
const AbortMSR = `echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2; kill -ABRT $$`

// Wrapper writes an executable that runs script (a POSIX sh fragment) when
// its command line has "-accel <accel>", and execs the real
// qemu-system-x86_64 otherwise. It skips the test when QEMU is missing.
func Wrapper(t *testing.T, accel, script string) string {
	t.Helper()
	real := testenv.Program(t, "qemu-system-x86_64", "make deps")
	// Not t.TempDir(): its parent is 0700, and a launcher running as root runs QEMU as an
	// unprivileged uid that must reach the wrapper.
	p := filepath.Join(testenv.OpenDir(t, "qemutest-", 0o755), "qemu-wrapper")
	body := "#!/bin/sh\ncase \" $* \" in\n*\" -accel " + accel + " \"*)\n" + script + "\n;;\nesac\nexec " + real + " \"$@\"\n"
	if err := os.WriteFile(p, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}
