package qemu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
)

// testUID is an unprivileged identity with no /etc/passwd entry for the confined boot.
const testUID = 59990

// sharedDir makes a directory others may read (mode 0755 under a 0711 parent in the temp
// dir): the stand-in for the launcher's image cache.
func sharedDir(t *testing.T) string {
	t.Helper()
	return testenv.OpenDir(t, "qs-", 0o755)
}

func copyReadOnly(t *testing.T, src, dir string) string {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, filepath.Base(src))
	if err := os.WriteFile(dst, b, 0o444); err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestBootConfined boots a guest as an unprivileged uid while this process holds a
// secret-looking variable, then reads /proc/<qemu pid>: the sandbox option is on the
// command line, the environment is empty, the uid is not 0, the guest runs (it prints its
// token), and that uid cannot read another VM's directory.
func TestBootConfined(t *testing.T) {
	needQEMU(t)
	if os.Geteuid() != 0 {
		testenv.Skip(t, "switching QEMU to another uid needs root; this test runs as uid %d", os.Geteuid())
	}
	secret := "slipway-test-kek-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	t.Setenv("SLIPWAY_TEST_S3_SECRET_KEY", secret)
	images := sharedDir(t)
	kernel := copyReadOnly(t, kernelPath(t), images)
	token := "confined-token-" + time.Now().Format("150405.000000")
	initrd := copyReadOnly(t, initramfs(t, "echo "+token+"\n/bin/busybox sleep 600\n"), images)
	dir := runDir(t)
	other := runDir(t) // another VM's directory, owned by another uid
	if err := os.WriteFile(filepath.Join(other, "disk-0.secret"), []byte("other VM's passphrase"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := ChownTree(other, testUID+1, testUID+1); err != nil {
		t.Fatal(err)
	}
	ctx := testCtx(t, bootTimeout+30*time.Second)
	vm, err := Start(ctx, Config{Name: "confined", Kernel: kernel, Initrd: initrd,
		Append: "console=ttyS0 panic=-1 loglevel=4", RunDir: dir, ImageDirs: []string{images},
		User: &User{UID: testUID, GID: testUID}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	waitConsole(t, vm, token, bootTimeout)
	proc := "/proc/" + strconv.Itoa(vm.PID())
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(cmdline, []byte("\x00-sandbox\x00"+SandboxArg+"\x00")) {
		t.Errorf("QEMU's command line has no -sandbox %s: %q", SandboxArg, cmdline)
	}
	environ, err := os.ReadFile(proc + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(environ, []byte(secret)) || bytes.Contains(environ, []byte("SLIPWAY_TEST_S3_SECRET_KEY")) {
		t.Errorf("QEMU's environment holds the launcher's secret: %q", environ)
	}
	if len(environ) != 0 {
		t.Errorf("QEMU's environment is not empty: %q", environ)
	}
	status, err := os.ReadFile(proc + "/status")
	if err != nil {
		t.Fatal(err)
	}
	want := "\t" + strconv.Itoa(testUID) + "\t"
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "Uid:") || strings.HasPrefix(l, "Gid:") {
			if !strings.Contains(l, want) || strings.Contains(l, "\t0\t") {
				t.Errorf("QEMU runs as %q, want uid/gid %d", l, testUID)
			}
		}
	}
	st, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s := st.Sys().(*syscall.Stat_t); s.Uid != testUID || st.Mode().Perm() != 0o700 {
		t.Errorf("RunDir is owned by %d with mode %04o, want %d and 0700", s.Uid, st.Mode().Perm(), testUID)
	}
	// What QEMU's uid can reach: its own directory, not the other VM's.
	cat := func(p string) error {
		c := exec.Command("/bin/cat", p)
		c.Env = []string{}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testUID, Gid: testUID, Groups: []uint32{}}}
		out, err := c.CombinedOutput()
		if err != nil {
			return &os.PathError{Op: "cat", Path: p, Err: os.ErrPermission}
		}
		_ = out
		return nil
	}
	if err := cat(filepath.Join(other, "disk-0.secret")); err == nil {
		t.Error("QEMU's uid can read another VM's secret file")
	}
	if err := cat(filepath.Join(dir, "qemu.pid")); err != nil {
		t.Errorf("QEMU's uid cannot read its own directory: %v", err)
	}
	if err := vm.Kill(); err != nil {
		t.Fatal(err)
	}
}

// TestConfinement: every file QEMU would open must lie in the VM's directories or the
// image directories, links and backing chains followed.
func TestConfinement(t *testing.T) {
	needQEMU(t)
	dir := runDir(t)
	images := t.TempDir()
	outside := t.TempDir()
	secretOut := secretFile(t, outside, "s", "x")
	rawOut := filepath.Join(outside, "host.raw")
	if err := os.WriteFile(rawOut, make([]byte, 1<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	rawImg := filepath.Join(images, "base.raw")
	if err := os.WriteFile(rawImg, make([]byte, 1<<20), 0o444); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.raw")
	if err := os.Symlink(rawOut, link); err != nil {
		t.Fatal(err)
	}
	overlayOut := filepath.Join(dir, "over.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", rawOut, overlayOut)
	overlayOK := filepath.Join(dir, "ok.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-F", "raw", "-b", rawImg, overlayOK)
	inSecret := secretFile(t, dir, "in.secret", "x")
	base := func() Config {
		return Config{Accel: AccelTCG, RunDir: dir, ImageDirs: []string{images}}
	}
	cases := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"kernel outside", func(c *Config) { c.Kernel = rawOut }, "kernel " + rawOut + " lies outside"},
		{"initrd outside", func(c *Config) { c.Kernel = rawImg; c.Initrd = "/etc/passwd" }, "initrd /etc/passwd lies outside"},
		{"disk outside", func(c *Config) { c.Disks = []Disk{{Path: rawOut, ReadOnly: true}} }, "lies outside"},
		{"link inside pointing outside", func(c *Config) { c.Disks = []Disk{{Path: link}} }, "lies outside"},
		{"secret outside", func(c *Config) {
			c.Disks = []Disk{{Path: rawImg, ReadOnly: true, Format: FormatLUKS, SecretFile: secretOut}}
		}, "secret file " + secretOut + " lies outside"},
		{"backing file outside", func(c *Config) { c.Disks = []Disk{{Path: overlayOut, Format: FormatQcow2}} }, "backing file " + rawOut + " lies outside"},
		{"writable disk in the image cache", func(c *Config) { c.Disks = []Disk{{Path: rawImg}} }, "writable by the guest but lies in the shared image directories"},
	}
	for _, tc := range cases {
		c := base()
		tc.mod(&c)
		if err := c.normalize(); err != nil {
			t.Fatalf("%s: normalize: %v", tc.name, err)
		}
		err := c.confine()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: confine() = %v, want %q", tc.name, err, tc.want)
		}
	}
	// And through Start, so nothing is launched.
	c := base()
	c.Disks = []Disk{{Path: rawOut, ReadOnly: true}}
	if _, err := Start(testCtx(t, time.Minute), c); err == nil || !strings.Contains(err.Error(), "lies outside") {
		t.Errorf("Start with a disk outside = %v, want a refusal", err)
	}
	assertNoQEMU(t, dir)
	// Images qemu-img opens as root are checked the same way.
	if err := CheckConfined(overlayOut, FormatQcow2, dir, images); err == nil || !strings.Contains(err.Error(), "backing file "+rawOut+" lies outside") {
		t.Errorf("CheckConfined(overlay over a host file) = %v", err)
	}
	if err := CheckConfined(overlayOK, FormatQcow2, dir, images); err != nil {
		t.Errorf("CheckConfined(overlay over the cache) = %v", err)
	}
	// What may be opened.
	ok := base()
	ok.Kernel = rawImg
	ok.Disks = []Disk{{Path: overlayOK, Format: FormatQcow2}, {Path: rawImg, ReadOnly: true},
		{Path: rawImg, ReadOnly: true, Format: FormatLUKS, SecretFile: inSecret}}
	if err := ok.normalize(); err != nil {
		t.Fatal(err)
	}
	if err := ok.confine(); err != nil {
		t.Errorf("confine() of a confined config = %v", err)
	}
}

func TestParseRaw(t *testing.T) {
	good := []struct {
		raw  string
		want []string
	}{
		{`-device virtio-rng-pci`, []string{"-device", "virtio-rng-pci"}},
		{`-smbios 'type=1,serial=a b' --no-hpet`, []string{"-smbios", "type=1,serial=a b", "--no-hpet"}},
		{"-global  kvm-pit.lost_tick_policy=discard\n-rtc base=utc", []string{"-global", "kvm-pit.lost_tick_policy=discard", "-rtc", "base=utc"}},
		{`-device "virtio-serial-pci,id=ser0" -uuid $HOME`, []string{"-device", "virtio-serial-pci,id=ser0", "-uuid", "$HOME"}},
		{``, nil},
	}
	for _, g := range good {
		got, err := ParseRaw(g.raw)
		if err != nil {
			t.Errorf("ParseRaw(%q) = %v", g.raw, err)
			continue
		}
		if strings.Join(got, "\x00") != strings.Join(g.want, "\x00") {
			t.Errorf("ParseRaw(%q) = %q, want %q", g.raw, got, g.want)
		}
	}
	bad := []struct{ raw, want string }{
		{`-drive file=/etc/shadow,if=virtio`, "-drive is refused: it names host files"},
		{`--drive file=shadow`, "-drive is refused"},
		{`-blockdev driver=file,filename=x`, "-blockdev is refused"},
		{`-chardev socket,id=x,path=s`, "-chardev is refused: it opens networks"},
		{`-netdev user,id=n`, "-netdev is refused"},
		{`-nic user`, "-nic is refused"},
		{`-object secret,id=s,file=x`, "-object is refused"},
		{`-add-fd fd=3,set=2`, "-add-fd is refused"},
		{`-fw_cfg name=opt/x,file=y`, "-fw_cfg is refused"},
		{`-kernel k`, "-kernel is refused"}, {`-initrd i`, "-initrd is refused"}, {`-bios b`, "-bios is refused"},
		{`-L dir`, "-L is refused"}, {`-readconfig c`, "-readconfig is refused"}, {`-loadvm s`, "-loadvm is refused"},
		{`-incoming tcp:0:4444`, "-incoming is refused"}, {`-sandbox off`, "-sandbox is refused"},
		{`-runas root`, "-runas is refused"}, {`-chroot x`, "-chroot is refused"}, {`-daemonize`, "-daemonize is refused"},
		{`-plugin p`, "-plugin is refused"}, {`-monitor stdio`, "-monitor is refused"}, {`-qmp tcp::1`, "-qmp is refused"},
		{`-serial tcp::1`, "-serial is refused"}, {`-parallel file:x`, "-parallel is refused"},
		{`-virtfs local,path=x`, "-virtfs is refused"}, {`-fsdev local,id=f`, "-fsdev is refused"},
		{`-device e1000,romfile=/etc/shadow`, "may not contain '/'"},
		{`-device e1000,romfile=shadow`, "property romfile names host files"},
		{`-device vhost-vsock-pci,guest-cid=3`, `device "vhost-vsock-pci" reaches the host`},
		{`-device vfio-pci,host=01:00.0`, `reaches the host`},
		{`-device virtserialport,chardev=qmp`, "property chardev"},
		{`-device driver=usb-host,hostbus=1`, `reaches the host`},
		{`-device {"driver":"e1000"}`, "JSON syntax is refused"},
		{`-global e1000.romfile=x`, "property romfile"},
		{`-global driver=e1000,property=romfile,value=x`, "property romfile"},
		{`-smbios file=x`, "property file names host files"},
		{`-smbios type=11,path=disk-0.secret`, "property path names host files"},
		{`-boot menu=on,splash=disk-0.secret`, "property splash"},
		{`-device pvrdma,ibdev=mlx5_0`, `device "pvrdma" reaches the host`},
		{`-device e1000,ibdev=x`, "property ibdev"},
		{`-device e1000; rm -rf x`, "not a shell command line"},
		{`-device "e1000`, "quote it"},
		{`-device`, "-device needs a value"},
		{`virtio-rng-pci`, "is not an option"},
		{`-machine q35,accel=kvm`, "-machine is refused"},
		{`-icount shift=1 -foo`, "-foo is not allowed"},
	}
	for _, b := range bad {
		if got, err := ParseRaw(b.raw); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("ParseRaw(%q) = %q, %v; want an error with %q", b.raw, got, err, b.want)
		}
	}
}
