package qemu

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// bootTimeout bounds a TCG boot on a shared 2-CPU machine.
const bootTimeout = 240 * time.Second

func needQEMU(t *testing.T) {
	t.Helper()
	for _, b := range []string{DefaultBinary, "qemu-img"} {
		testenv.Program(t, b, "make deps")
	}
}

// kernelPath returns bin/kernel/vmlinuz or skips.
func kernelPath(t *testing.T) string {
	return testenv.RepoFile(t, "bin/kernel/vmlinuz", "tools/fetch-kernel.sh fetches it")
}

// runDir makes a short run directory (unix socket paths are limited).
func runDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "qt-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// qemuProcesses lists the PIDs of QEMU processes whose command line mentions marker, by
// scanning /proc as pgrep -f would.
func qemuProcesses(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte("qemu-system")) {
			continue
		}
		if bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

// assertNoQEMU fails if a QEMU process using dir is still alive.
func assertNoQEMU(t *testing.T, dir string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := qemuProcesses(dir)
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("QEMU processes left behind for %s: %v", dir, pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// cpioEntry is one file of a newc archive.
type cpioEntry struct {
	name         string
	mode         uint32 // type and permission bits
	data         []byte
	major, minor uint32 // device numbers of a device node
}

// writeNewc writes a newc ("070701") cpio archive, as the kernel's initramfs unpacker
// reads it. Device nodes need no privilege this way.
func writeNewc(path string, entries []cpioEntry) error {
	var b bytes.Buffer
	pad := func() {
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	write := func(ino int, e cpioEntry) {
		nlink := 1
		if e.mode&0o170000 == 0o040000 {
			nlink = 2
		}
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, e.mode, 0, 0, nlink, 0, len(e.data), 0, 0, e.major, e.minor, len(e.name)+1, 0)
		b.WriteString(e.name)
		b.WriteByte(0)
		pad()
		b.Write(e.data)
		pad()
	}
	for i, e := range entries {
		write(i+1, e)
	}
	write(0, cpioEntry{name: "TRAILER!!!"})
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// initramfs builds an initramfs whose /init is script, run by the static busybox.
func initramfs(t *testing.T, script string) string {
	t.Helper()
	bb := testenv.Program(t, "busybox", "apt-get install busybox-static")
	data, err := os.ReadFile(bb)
	if err != nil {
		t.Fatal(err)
	}
	if !isStaticELF(data) {
		testenv.Skip(t, "%s is not statically linked (install busybox-static)", bb)
	}
	const dir, chr, reg = 0o040755, 0o020600, 0o100755
	entries := []cpioEntry{
		{name: "bin", mode: dir}, {name: "dev", mode: dir}, {name: "proc", mode: dir}, {name: "sys", mode: dir},
		{name: "dev/console", mode: chr, major: 5, minor: 1},
		{name: "bin/busybox", mode: reg, data: data},
		{name: "init", mode: reg, data: []byte("#!/bin/busybox sh\n" + script)},
	}
	p := filepath.Join(t.TempDir(), "initramfs.cpio")
	if err := writeNewc(p, entries); err != nil {
		t.Fatal(err)
	}
	return p
}

// isStaticELF reports whether an ELF file has no PT_INTERP program header.
func isStaticELF(b []byte) bool {
	return len(b) > 4 && string(b[:4]) == "\x7fELF" && !bytes.Contains(b[:min(len(b), 4096)], []byte("/lib64/ld-linux"))
}

// waitConsole waits until the console log contains want, QEMU exits, or the timeout.
func waitConsole(t *testing.T, vm *VM, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.After(timeout)
	for {
		b, _ := os.ReadFile(vm.ConsoleLog())
		if strings.Contains(string(b), want) {
			return string(b)
		}
		select {
		case <-deadline:
			t.Fatalf("%q not on the console after %v; console:\n%s", want, timeout, lastLines(string(b), 30))
		case <-vm.Done():
			b, _ = os.ReadFile(vm.ConsoleLog())
			if strings.Contains(string(b), want) {
				return string(b)
			}
			t.Fatalf("QEMU exited (%s) before %q; console:\n%s", vm.ExitReason(), want, lastLines(string(b), 30))
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// testCtx is a context for one test, ended at its cleanup.
func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// secretFile writes a 0600 passphrase file.
func secretFile(t *testing.T, dir, name, pass string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(pass), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// qemuImg runs qemu-img and fails the test on error.
func qemuImg(t *testing.T, args ...string) {
	t.Helper()
	testenv.Exec(t, "qemu-img", args...)
}

// makeLUKS creates an empty LUKS image with the passphrase in secret. qemu-img always
// benchmarks PBKDF2 first and fails with "Unable to get accurate CPU usage" when a round
// measures 0 ms of thread CPU time (tick-based accounting on a loaded host), whatever the
// iter-time: retry a few times.
func makeLUKS(t *testing.T, path, secret, size string) {
	t.Helper()
	var out string
	var err error
	for range 8 {
		os.Remove(path)
		out, err = execOut("qemu-img", "create", "-q", "-f", "luks", "--object", "secret,id=sec0,format=raw,file="+secret,
			"-o", "key-secret=sec0,iter-time=200", path, size)
		if err == nil || !strings.Contains(out, "Unable to get accurate CPU usage") {
			break
		}
	}
	if err != nil {
		t.Fatalf("qemu-img create -f luks %s: %v: %s", path, err, out)
	}
}

func execOut(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
