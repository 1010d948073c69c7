package qemuimg

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/pkg/testenv"
)

// qemu-img, a parser of hostile disks, gets none of the converter's
// environment (S3 keys, credentials).
func TestQemuImgGetsAnEmptyEnvironment(t *testing.T) {
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	r := &Runner{Binary: "env"} // prints its environment
	out, err := r.Run(context.Background(), r.Light())
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Fields(string(out)), run.ChildEnv(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("qemu-img's environment %q, want %q", got, want)
	}
}

// probeScript writes a stand-in for qemu-img that prints, from /proc, what
// it was started with: its environment (as execve gave it, before the shell
// adds anything), its resource limits, its pid and stat line (process group
// and niceness), then its arguments.
func probeScript(t *testing.T) string {
	t.Helper()
	return testenv.Script(t, "qemu-img", `#!/bin/sh
tr '\0' '\n' < /proc/$$/environ
echo ---
cat /proc/$$/limits
echo ---
echo "$$"
cat /proc/$$/stat
echo ---
printf '%s\n' "$@"
`)
}

// probed is what probeScript printed.
type probed struct {
	env       []string
	cpu, as   string // soft limits as /proc/<pid>/limits shows them
	pid, pgrp string
	nice      int
	args      []string
	rawLimits string
}

func parseProbe(t *testing.T, out string) probed {
	t.Helper()
	parts := strings.Split(out, "---\n")
	if len(parts) != 4 {
		t.Fatalf("probe output in %d parts, want 4:\n%s", len(parts), out)
	}
	var p probed
	p.env = strings.Fields(parts[0])
	p.rawLimits = parts[1]
	for _, line := range strings.Split(parts[1], "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "Max cpu time") && len(f) >= 4:
			p.cpu = f[3]
		case strings.HasPrefix(line, "Max address space") && len(f) >= 4:
			p.as = f[3]
		}
	}
	lines := strings.SplitN(parts[2], "\n", 2)
	p.pid = lines[0]
	// Fields after the ")" closing comm: state ppid pgrp … nice is the 17th.
	stat := lines[1][strings.LastIndexByte(lines[1], ')')+2:]
	f := strings.Fields(stat)
	if len(f) < 17 {
		t.Fatalf("stat line %q", lines[1])
	}
	p.pgrp = f[2]
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatalf("nice in %q: %v", lines[1], err)
	}
	p.nice = n
	p.args = strings.Fields(parts[3])
	return p
}

// ownNice is the niceness of the test process, which qemu-img's adds to.
func ownNice(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	n, err := strconv.Atoi(f[16])
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Command confines what it starts: prlimit's CPU and address-space limits
// (the runner's Light and Heavy ones, or a Limits value of the caller's),
// nice, run.ChildEnv as the whole environment, its own process group.
func TestCommandIsConfined(t *testing.T) {
	t.Setenv("SLIPWAY_S3_SECRET_KEY", "must-not-leak")
	t.Setenv("SLIPWAY_KEK", "must-not-leak-either")
	bin := probeScript(t)
	r := &Runner{Binary: bin, CPUSeconds: 7, AddressSpace: 768 << 20, ConvertCPUSeconds: 11, ConvertAddressSpace: 3 << 30, Nice: 5}
	wantNice := min(ownNice(t)+5, 19)
	for _, c := range []struct {
		name    string
		lim     Limits
		cpu, as int64
	}{
		{"light", r.Light(), 7, 768 << 20},
		{"heavy", r.Heavy(), 11, 3 << 30},
		{"caller's", Limits{CPUSeconds: 6 * 3600, AddressSpace: 4 << 30}, 6 * 3600, 4 << 30},
		{"zero fields take the light limits", Limits{}, 7, 768 << 20},
	} {
		t.Run(c.name, func(t *testing.T) {
			cmd := r.Command(context.Background(), c.lim, "info", "-f", "raw", "/x/y.raw")
			out, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			p := parseProbe(t, string(out))
			if got, want := strings.Join(p.env, " "), strings.Join(run.ChildEnv(), " "); got != want {
				t.Errorf("environment %q, want only run.ChildEnv %q", got, want)
			}
			if p.cpu != fmt.Sprint(c.cpu) || p.as != fmt.Sprint(c.as) {
				t.Errorf("limits cpu %s s, as %s bytes; want %d and %d:\n%s", p.cpu, p.as, c.cpu, c.as, p.rawLimits)
			}
			if p.pgrp != p.pid || p.pid != strconv.Itoa(cmd.Process.Pid) {
				t.Errorf("qemu-img pid %s (Command's %d) in process group %s: want its own group", p.pid, cmd.Process.Pid, p.pgrp)
			}
			if p.nice != wantNice {
				t.Errorf("niceness %d, want %d", p.nice, wantNice)
			}
			if got := strings.Join(p.args, " "); got != "info -f raw /x/y.raw" {
				t.Errorf("arguments %q", got)
			}
		})
	}
	// Run goes through Command: the same limits, and stdout returned.
	out, err := r.Run(context.Background(), r.Heavy(), "convert")
	if err != nil {
		t.Fatal(err)
	}
	if p := parseProbe(t, string(out)); p.cpu != "11" || p.as != fmt.Sprint(3<<30) || strings.Join(p.env, " ") != strings.Join(run.ChildEnv(), " ") {
		t.Errorf("Run: cpu %s as %s env %q", p.cpu, p.as, p.env)
	}
	// A negative Nice leaves the niceness alone.
	r.Nice = -1
	out, err = r.Command(context.Background(), r.Light()).Output()
	if err != nil {
		t.Fatal(err)
	}
	if p := parseProbe(t, string(out)); p.nice != ownNice(t) {
		t.Errorf("Nice -1: niceness %d, want %d", p.nice, ownNice(t))
	}
}

// Stream writes stdout as it comes and describes a failure like Run.
func TestStreamAndErrors(t *testing.T) {
	bin := testenv.Script(t, "qemu-img", "#!/bin/sh\necho out-$1\necho \"qemu-img: $1: it went wrong\" >&2\nexit 3\n")
	r := &Runner{Binary: bin}
	var sb strings.Builder
	err := r.Stream(context.Background(), r.Heavy(), &sb, "snapshot")
	if sb.String() != "out-snapshot\n" {
		t.Errorf("streamed %q", sb.String())
	}
	if err == nil || !strings.Contains(err.Error(), "qemu-img snapshot: exit status 3: qemu-img: snapshot: it went wrong") {
		t.Errorf("error %v", err)
	}
	if exitCode(err) != 3 {
		t.Errorf("exit code through the error: %d", exitCode(err))
	}
}
