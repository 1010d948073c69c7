package guestinit

import (
	"bufio"
	"context"
	"encoding/base64"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// kernelPath finds the bzImage tools/fetch-kernel.sh leaves in bin/kernel.
func kernelPath(t *testing.T) string {
	t.Helper()
	k := os.Getenv("SLIPWAY_KERNEL")
	if k == "" {
		k = filepath.Join(repoRoot(t), "bin/kernel/vmlinuz")
	}
	if _, err := os.Stat(k); err != nil {
		t.Fatalf("no kernel to boot (%v): run make kernel (tools/fetch-kernel.sh), or set SLIPWAY_KERNEL", err)
	}
	return k
}

// writeInitramfs makes a newc initramfs: busybox, the init at /.slipway/init
// and /init, the config, an /etc/passwd with user app, and the two device
// nodes every Slipway image carries (RequiredDevices). Mount points are left
// for the init to create.
func writeInitramfs(t *testing.T, path, config string) {
	t.Helper()
	f, err := os.Create(path)
	must(t, err)
	defer f.Close()
	w := bufio.NewWriterSize(f, 1<<20)
	c := &newcWriter{w: w}
	steps := []func() error{
		func() error { return c.dir("bin") },
		func() error { return c.file("bin/busybox", "/bin/busybox", 0o755) },
		func() error { return c.symlink("bin/sh", "busybox") },
		func() error { return c.dir(".slipway") },
		func() error { return c.file(".slipway/init", buildInit(t), 0o755) },
		func() error { return c.data(".slipway/config.json", config, 0o644) },
		func() error { return c.symlink("init", ".slipway/init") },
		func() error { return c.dir("etc") },
		func() error {
			return c.data("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n", 0o644)
		},
		func() error { return c.data("etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n", 0o644) },
		func() error { return c.dir("dev") },
	}
	for _, d := range RequiredDevices {
		d := d
		steps = append(steps, func() error {
			return c.entry(cpioEntry{name: strings.TrimPrefix(d.Path, "/"), mode: cpioChar | d.Mode, major: d.Major, minor: d.Minor}, nil)
		})
	}
	steps = append(steps, c.close, w.Flush)
	for _, s := range steps {
		must(t, s())
	}
}

// TestQEMUBoot is integration test B: Debian's kernel boots the init from an
// initramfs under QEMU (TCG); the init mounts, applies the context from the
// command line, runs the process as user app, and powers the VM off.
func TestQEMUBoot(t *testing.T) {
	kernel := kernelPath(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not installed (make deps): ", err)
	}
	dir := t.TempDir()
	initrd := filepath.Join(dir, "initramfs.cpio")
	const script = `echo TOKEN-QEMU-$GREETING; echo host=$(busybox hostname) uid=$(busybox id -u) groups=$(busybox id -G);
echo cwd=$(busybox pwd) key=$(busybox cat .ssh/authorized_keys) started=$(busybox cat /run/started);
echo mounts=$(busybox awk '{print $2}' /proc/mounts | busybox grep -cxE '/proc|/sys|/dev|/dev/pts|/dev/shm|/run')`
	writeInitramfs(t, initrd, `{"entrypoint":["busybox","sh","-c"],"cmd":[`+jsonString(script)+`],
		"env":["GREETING=ok"],"user":"app","workdir":"/home/app"}`)
	ctxSh := "SSH_PUBLIC_KEY='ssh-ed25519 AAAAqemu test@slipway'\nSTART_SCRIPT='echo yes > /run/started'\n"
	appendLine := "console=ttyS0 rdinit=" + InitPath + " panic=-1 quiet slipway.ctx.HOSTNAME=vm-qemu slipway.ctx_b64=" +
		base64.StdEncoding.EncodeToString([]byte(ctxSh))

	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	t.Logf("QEMU ran %s; console:\n%s", time.Since(start).Round(time.Millisecond), out)
	if ctx.Err() != nil {
		t.Fatalf("the VM did not power off within 120 s")
	}
	if err != nil {
		t.Fatalf("qemu: %v", err)
	}
	// panic=-1 with -no-reboot also ends QEMU cleanly: require the power-off.
	if !strings.Contains(string(out), "reboot: Power down") || strings.Contains(string(out), "Kernel panic") {
		t.Fatalf("the VM did not power off (no \"reboot: Power down\", or a kernel panic)")
	}
	ls := lines(string(out))
	ready, token, exit := indexOf(ls, ReadyLine+" pid="), indexOf(ls, "TOKEN-QEMU-ok"), indexOf(ls, ExitLine+" code=0")
	if ready < 0 || token < 0 || exit < 0 || !(ready < token && token < exit) {
		t.Fatalf("ready (%d), token (%d), exit (%d) lines missing or out of order", ready, token, exit)
	}
	want := []string{
		"host=vm-qemu uid=1000 groups=1000 50",
		"cwd=/home/app key=ssh-ed25519 AAAAqemu test@slipway started=yes",
		"mounts=6",
	}
	if got := ls[token+1 : min(token+4, len(ls))]; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("process output:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func jsonString(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	return `"` + r.Replace(s) + `"`
}

// TestQEMUBootMachineInit: a config with init (a rootfs's /sbin/init) is
// exec'd by PID 1 once the system is prepared: the program runs as PID 1,
// which is what systemd, busybox init and sysvinit insist on, and no exit
// line follows (the init is gone; the program powers the machine off).
func TestQEMUBootMachineInit(t *testing.T) {
	kernel := kernelPath(t)
	qemu, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Fatal("qemu-system-x86_64 not installed (make deps): ", err)
	}
	initrd := filepath.Join(t.TempDir(), "initramfs.cpio")
	writeInitramfs(t, initrd, `{"entrypoint":["/bin/busybox","sh","-c"],"cmd":["echo TOKEN-INIT-pid=$$ host=$(busybox hostname); busybox poweroff -f"],"init":true}`)
	appendLine := "console=ttyS0 rdinit=" + InitPath + " panic=-1 quiet slipway.ctx.HOSTNAME=vm-init"
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, qemu, "-machine", "q35", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot",
		"-kernel", kernel, "-initrd", initrd, "-append", appendLine).CombinedOutput()
	t.Logf("console:\n%s", out)
	if ctx.Err() != nil || err != nil {
		t.Fatalf("the VM did not power off within 120 s: %v", err)
	}
	ls := lines(string(out))
	ready, token := indexOf(ls, ReadyLine+" pid=1 cmd=/bin/busybox"), indexOf(ls, "TOKEN-INIT-pid=1 host=vm-init")
	if ready < 0 || token < 0 || ready > token {
		t.Fatalf("ready (%d) and token (%d) lines missing or out of order: the init did not hand PID 1 over", ready, token)
	}
	if indexOf(ls, ExitLine) >= 0 {
		t.Error("an exit line after the init handed PID 1 over")
	}
}
