package guestinit

import (
	"bytes"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRunInRoot runs Init.Run in the test process on a rootfs directory
// with the machine duties injected: the context from the command line
// drives hostname, network, SSH keys and the start script, and the process
// runs chrooted as the image's user.
func TestRunInRoot(t *testing.T) {
	needRoot(t, "chroot and switching users")
	root := busyboxRoot(t, `{"entrypoint":["/bin/busybox"],"cmd":["false"],"user":"app","hostname":"from-config",
		"env":["GREETING=hello"],"workdir":"/home/app","poweroff":true}`)
	must(t, os.Symlink("busybox", filepath.Join(root, "bin/sh")))
	must(t, os.Mkdir(filepath.Join(root, "run"), 0o755)) // a tmpfs in a VM
	writeFile(t, root+"/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o644)
	must(t, os.Symlink("../run/resolv.conf", filepath.Join(root, "etc/resolv.conf"))) // as systemd images do
	ctxSh := "SSH_PUBLIC_KEY='ssh-ed25519 AAAA test@host'\nSTART_SCRIPT='echo \"start $ETH0_IP\" > /run/started'\n"

	stdout, err := os.Create(filepath.Join(t.TempDir(), "stdout"))
	must(t, err)
	defer stdout.Close()
	var console bytes.Buffer
	var hostname string
	var net *NetConfig
	powered := false
	in := &Init{
		Root: root, Console: &console, Stdout: stdout, Stderr: stdout,
		Cmdline: "console=ttyS0 slipway.ctx.HOSTNAME=vm-9 slipway.ctx.ETH0_IP=10.9.0.2 slipway.ctx.ETH0_DNS=10.9.0.53 " +
			"slipway.ctx_b64=" + base64.StdEncoding.EncodeToString([]byte(ctxSh)) +
			` -- sh -c "echo $GREETING $HOSTNAME $HOME $(/bin/busybox id -u) $(/bin/busybox pwd); exit 3"`,
		Sethostname:      func(n string) error { hostname = n; return nil },
		ConfigureNetwork: func(_ string, nc *NetConfig) error { net = nc; return nil },
		PowerOff:         func() error { powered = true; return nil },
	}
	code := in.Run()
	out, err := os.ReadFile(stdout.Name())
	must(t, err)
	t.Logf("console:\n%s\nstdout:\n%s", console.String(), out)

	if code != 3 || !powered || !strings.Contains(console.String(), ExitLine+" code=3\n") ||
		!strings.Contains(console.String(), ReadyLine+" pid=") {
		t.Errorf("code %d, powered off %v", code, powered)
	}
	if got := strings.TrimSpace(string(out)); got != "hello vm-9 /home/app 1000 /home/app" {
		t.Errorf("process output %q", got)
	}
	if hostname != "vm-9" || net == nil || net.Address.String() != "10.9.0.2/24" {
		t.Errorf("hostname %q, network %+v", hostname, net)
	}
	for file, want := range map[string]string{
		"run/started":                   "start 10.9.0.2\n",
		"run/resolv.conf":               "nameserver 10.9.0.53\n",
		"home/app/.ssh/authorized_keys": "ssh-ed25519 AAAA test@host\n",
	} {
		b, err := os.ReadFile(filepath.Join(root, file))
		if err != nil || !strings.HasSuffix(string(b), want) {
			t.Errorf("%s: %q %v, want %q", file, b, err, want)
		}
	}
	if fi, err := os.Stat(filepath.Join(root, "home/app/.ssh")); err != nil || statOwner(fi) != [2]uint32{1000, 1000} {
		t.Errorf(".ssh owner: %v", err)
	}
}

// TestRunStartScriptWithoutShell: a scratch image cannot run a start
// script, and says so instead of failing the boot.
func TestRunStartScriptWithoutShell(t *testing.T) {
	needRoot(t, "chroot")
	root := busyboxRoot(t, `{"cmd":["/bin/busybox","true"],"poweroff":false}`)
	var console bytes.Buffer
	in := &Init{Root: root, Console: &console, Stdout: os.Stdout, Stderr: os.Stderr,
		Cmdline: `"slipway.ctx.START_SCRIPT=echo hi"`}
	if code := in.Run(); code != 0 {
		t.Errorf("code %d", code)
	}
	if !strings.Contains(console.String(), "START_SCRIPT cannot run: the image has no /bin/sh") {
		t.Errorf("console:\n%s", console.String())
	}
}

func TestPowerOffDecision(t *testing.T) {
	no, yes := false, true
	cases := []struct {
		c    *Cmdline
		cfg  *Config
		want bool
	}{
		{&Cmdline{}, &Config{}, true},
		{&Cmdline{}, &Config{PowerOff: &no}, false},
		{&Cmdline{PowerOff: &yes}, &Config{PowerOff: &no}, true},
		{&Cmdline{PowerOff: &no}, &Config{}, false},
		{&Cmdline{}, nil, true},
	}
	for i, c := range cases {
		if got := powerOff(c.c, c.cfg); got != c.want {
			t.Errorf("case %d: %v", i, got)
		}
	}
}
