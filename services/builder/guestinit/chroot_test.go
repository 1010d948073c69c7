package guestinit

import (
	"bufio"
	"bytes"
	"os/exec"
	"strings"
	"syscall"
	"testing"
)

// runChroot runs the built init chrooted into root, not as PID 1 (its
// supervisor mode: no mounts, no power off), and returns its output and
// exit code.
func runChroot(t *testing.T, root string) (string, int) {
	t.Helper()
	cmd := exec.Command(InitPath)
	cmd.Dir = "/"
	cmd.Env = []string{}
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("running the init: %v", err)
	}
	return out.String(), code
}

// TestChrootRun is integration test A: the real binary runs busybox as uid
// 1000 in a scratch-like root (no /etc/passwd, no shell at /bin/sh).
func TestChrootRun(t *testing.T) {
	needRoot(t, "chroot and switching to uid 1000")
	root := busyboxRoot(t, `{"cmd":["/bin/busybox","sh","-c","echo TOKEN-123; /bin/busybox id -u; /bin/busybox id -G; pwd; echo home=$HOME path=$PATH"],
		"user":"1000","workdir":"/work/dir"}`)
	out, code := runChroot(t, root)
	t.Logf("output:\n%s", out)
	ls := lines(out)
	ready, token, exit := indexOf(ls, ReadyLine+" pid="), indexOf(ls, "TOKEN-123"), indexOf(ls, ExitLine+" code=0")
	if ready < 0 || token < 0 || exit < 0 {
		t.Fatalf("missing ready (%d), token (%d) or exit (%d) line", ready, token, exit)
	}
	if !(ready < token && token < exit) || !strings.HasSuffix(ls[ready], " cmd=/bin/busybox") {
		t.Errorf("order or ready line wrong: %q", ls)
	}
	want := []string{"1000", "0", "/work/dir", "home=/ path=" + DefaultPath}
	if got := ls[token+1 : token+5]; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("uid, gids, cwd, env: got %q want %q", got, want)
	}
	if code != 0 {
		t.Errorf("init exit code %d", code)
	}
}

func TestChrootUserFromPasswd(t *testing.T) {
	needRoot(t, "chroot and switching users")
	root := busyboxRoot(t, `{"entrypoint":["busybox","sh","-c"],"cmd":["/bin/busybox id -u; /bin/busybox id -G; echo $HOME; exit 7"],
		"user":"app","env":["PATH=/bin"]}`)
	writeFile(t, root+"/etc/passwd", "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n", 0o644)
	writeFile(t, root+"/etc/group", "root:x:0:\napp:x:1000:\nstaff:x:50:app\n", 0o644)
	out, code := runChroot(t, root)
	ls := lines(out)
	i := indexOf(ls, "1000")
	if i < 0 || i+2 >= len(ls) || ls[i+1] != "1000 50" || ls[i+2] != "/home/app" {
		t.Errorf("user app: %q", ls)
	}
	if code != 7 || indexOf(ls, ExitLine+" code=7") < 0 {
		t.Errorf("exit code %d, output %q", code, ls)
	}
}

func TestChrootFailures(t *testing.T) {
	needRoot(t, "chroot")
	cases := []struct {
		config, msg string
		code        int
	}{
		{`{"cmd":["nope"]}`, `"nope": executable file not found in PATH`, ExitNotFound},
		{`{"cmd":["/etc/motd"]}`, "not an executable file", ExitCannotExec},
		{`{"cmd":["/bin/busybox"],"user":"nginx"}`, `user "nginx": the image has no /etc/passwd`, ExitInitError},
		{`{"cmd":}`, "container config", ExitInitError},
		{`{}`, "no command", ExitInitError},
	}
	for _, c := range cases {
		root := busyboxRoot(t, c.config)
		writeFile(t, root+"/etc/motd", "hi", 0o644)
		out, code := runChroot(t, root)
		if code != c.code || !strings.Contains(out, c.msg) || strings.Contains(out, ReadyLine) ||
			!strings.Contains(out, ExitLine+" code=") {
			t.Errorf("%s: code %d, output:\n%s", c.config, code, out)
		}
	}
}

// TestChrootForwardsSIGTERM: SIGTERM to the init reaches the process, and
// the init reports 128+15.
func TestChrootForwardsSIGTERM(t *testing.T) {
	needRoot(t, "chroot")
	root := busyboxRoot(t, `{"cmd":["/bin/busybox","sh","-c","echo started; exec /bin/busybox sleep 60"]}`)
	cmd := exec.Command(InitPath)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	sc := bufio.NewScanner(stdout)
	var out []string
	for sc.Scan() {
		out = append(out, sc.Text())
		if sc.Text() == "started" {
			must(t, cmd.Process.Signal(syscall.SIGTERM))
		}
	}
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 128+15 || indexOf(out, ExitLine+" code=143") < 0 {
		t.Errorf("wait: %v, output %q", err, out)
	}
}
