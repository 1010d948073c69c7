package qemu

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A device node proves nothing: on nested hosts /dev/kvm opens read-write
// while QEMU aborts on -cpu host ("failed to set MSR 0x10a") or runs guests
// that never print a line. So the accelerator is chosen by booting a guest
// (see probeguest.go) with each candidate in turn; the first whose guest
// prints its line within the deadline wins.

// CPU models.
const (
	CPUHost = "host"   // KVM: the host's CPU as it is
	CPUBase = "qemu64" // conservative: QEMU's baseline x86-64 model, KVM or TCG
)

// DefaultProbeTimeout is how long one candidate's guest gets to print its line.
// A working KVM prints in well under a second; TCG in about one.
const DefaultProbeTimeout = 5 * time.Second

// Candidate is one accelerator and CPU model.
type Candidate struct {
	Accel string `json:"accel"`
	CPU   string `json:"cpu"`
}

func (c Candidate) String() string { return c.Accel + " (-cpu " + c.CPU + ")" }

// Candidates returns what Probe tries, best first, for force "" (every
// candidate), "kvm" or "tcg".
func Candidates(force string) ([]Candidate, error) {
	kvm := []Candidate{{AccelKVM, CPUHost}, {AccelKVM, CPUBase}}
	tcg := []Candidate{{AccelTCG, CPUBase}}
	switch force {
	case "":
		return append(kvm, tcg...), nil
	case AccelKVM:
		return kvm, nil
	case AccelTCG:
		return tcg, nil
	}
	return nil, fmt.Errorf("accelerator %q: want kvm, tcg or empty (probe)", force)
}

// Rejection is a candidate that failed its probe, and why.
type Rejection struct {
	Candidate
	Reason string `json:"reason"`
}

func (r Rejection) String() string { return r.Accel + " -cpu " + r.CPU + ": " + r.Reason }

// Accelerator is what Probe chose: the accelerator and CPU model VMs run with,
// and why each better candidate was passed over.
type Accelerator struct {
	Candidate
	PassedOver []Rejection `json:"passed_over,omitempty"`
}

// Explain is one line for a log or a human: the choice, then what was
// passed over.
func (a Accelerator) Explain() string {
	s := a.Candidate.String()
	for _, r := range a.PassedOver {
		s += "; passed over " + r.String()
	}
	return s
}

// ProbeConfig says how to probe. The zero value probes every candidate with
// qemu-system-x86_64 from PATH.
type ProbeConfig struct {
	// Binary is the QEMU to run; default qemu-system-x86_64. Tests give a
	// wrapper script here to make a candidate abort or hang for real.
	Binary string
	// Force is "" (try every candidate), "kvm" or "tcg".
	Force string
	// Timeout bounds each candidate's boot; default DefaultProbeTimeout.
	Timeout time.Duration
	// ExtraArgs are added to each probe's command line (after Slipway's own).
	ExtraArgs []string
	// User, when set, is who QEMU runs as: the identity VMs will have, so
	// the probe proves what they can use (an unprivileged uid may not open
	// /dev/kvm where root can) and a hostile QEMU escape is not root.
	User *User
}

func (c *ProbeConfig) defaults() {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultProbeTimeout
	}
}

// ErrNoAccelerator is returned (wrapped, with every candidate's reason) when
// no candidate's guest printed its line.
var ErrNoAccelerator = errors.New("no accelerator runs guests")

// Probe boots the probe guest with each candidate, best first, and returns
// the first that prints its line. A forced accelerator that fails is an
// error naming why; it never falls back to another.
func Probe(ctx context.Context, cfg ProbeConfig) (Accelerator, error) {
	cfg.defaults()
	cands, err := Candidates(cfg.Force)
	if err != nil {
		return Accelerator{}, err
	}
	bin, err := exec.LookPath(cfg.Binary)
	if err != nil {
		return Accelerator{}, fmt.Errorf("%w: %v", ErrNoAccelerator, err)
	}
	dir, err := os.MkdirTemp("", "slipway-probe-")
	if err != nil {
		return Accelerator{}, err
	}
	defer os.RemoveAll(dir)
	if cfg.User != nil {
		if err := ChownTree(dir, int(cfg.User.UID), int(cfg.User.GID)); err != nil {
			return Accelerator{}, err
		}
	}
	var acc Accelerator
	for _, c := range cands {
		err := probeOne(ctx, bin, dir, c, cfg)
		if err == nil {
			acc.Candidate = c
			return acc, nil
		}
		if ctx.Err() != nil {
			return Accelerator{}, ctx.Err()
		}
		acc.PassedOver = append(acc.PassedOver, Rejection{c, err.Error()})
	}
	reasons := make([]string, len(acc.PassedOver))
	for i, r := range acc.PassedOver {
		reasons[i] = r.String()
	}
	return Accelerator{}, fmt.Errorf("%w: %s", ErrNoAccelerator, strings.Join(reasons, "; "))
}

// probeOne boots the probe guest under c and waits for its line.
func probeOne(ctx context.Context, bin, dir string, c Candidate, cfg ProbeConfig) error {
	nonce := make([]byte, 8)
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	line := "slipway-probe " + hex.EncodeToString(nonce) + " long mode reached"
	rom, err := probeROM(line + "\n")
	if err != nil {
		return err
	}
	romPath := filepath.Join(dir, c.Accel+"-"+c.CPU+".rom")
	if err := os.WriteFile(romPath, rom, 0o600); err != nil {
		return err
	}
	if u := cfg.User; u != nil {
		if err := os.Chown(romPath, int(u.UID), int(u.GID)); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	args := []string{
		"-machine", "q35", "-accel", c.Accel, "-cpu", c.CPU, "-m", "16",
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", SandboxArg, "-bios", romPath, "-serial", "stdio",
	}
	cmd := exec.Command(bin, append(args, cfg.ExtraArgs...)...)
	cmd.Env = []string{} // QEMU needs nothing from ours
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL, Credential: credential(cfg.User)}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu did not start: %v", err)
	}
	seen := make(chan bool, 1)
	go func() { seen <- scanFor(stdout, line) }()
	var ok bool
	select {
	case ok = <-seen:
	case <-ctx.Done():
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) // the guest halts; nothing to wait for
	waitErr := cmd.Wait()
	switch {
	case ok:
		return nil
	case ctx.Err() != nil && !exitedEarly(waitErr):
		return fmt.Errorf("the guest printed nothing within %v (it hangs)", cfg.Timeout)
	}
	err = qemuFailure(waitErr, stderr.String())
	if u := cfg.User; u != nil && c.Accel == AccelKVM && strings.Contains(stderr.String(), "Permission denied") {
		err = fmt.Errorf("%w (QEMU runs as uid %d, as VMs do: %s must let it, or its group, read and write)", err, u.UID, kvmDevice)
	}
	return err
}

// scanFor reports whether r yields a line equal to want before it ends.
func scanFor(r io.Reader, want string) bool {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), "\r") == want {
			return true
		}
	}
	return false
}

// exitedEarly tells a QEMU that ended by itself from one we killed.
func exitedEarly(err error) bool {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return err == nil
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL
}

// qemuFailure names how QEMU ended, with its own last error line.
func qemuFailure(waitErr error, stderr string) error {
	how := "qemu exited with status 0 before the guest printed its line"
	var ee *exec.ExitError
	if waitErr != nil && !errors.As(waitErr, &ee) {
		how = "qemu failed: " + waitErr.Error()
	} else if ee != nil {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			how = "qemu " + signalVerb(ws.Signal())
		} else {
			how = fmt.Sprintf("qemu exited with status %d", ee.ExitCode())
		}
	}
	if msg := qemuMessage(stderr); msg != "" {
		return fmt.Errorf("%s: %s", how, msg)
	}
	return errors.New(how)
}

func signalVerb(s syscall.Signal) string {
	if s == syscall.SIGABRT {
		return "aborted"
	}
	return "was killed by " + s.String()
}

// qemuMessage picks QEMU's own error from its stderr: the first line that
// says "error", else the last line, without the program-name prefix, bounded.
func qemuMessage(stderr string) string {
	var lines []string
	for _, l := range strings.Split(stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) == 0 {
		return ""
	}
	pick := lines[len(lines)-1]
	for _, l := range lines {
		if strings.Contains(strings.ToLower(l), "error") {
			pick = l
			break
		}
	}
	if i := strings.Index(pick, ": "); i > 0 && strings.HasPrefix(pick[:i], "qemu-system") {
		pick = pick[i+2:]
	}
	pick = strings.TrimPrefix(pick, "error: ")
	const max = 300
	if len(pick) > max {
		pick = pick[:max] + "…"
	}
	return pick
}

// probed remembers each successful probe for the life of the process: the
// host's accelerators do not change under a running launcher, and a test
// binary that starts many launchers pays for one probe.
var probed sync.Map // probeKey → Accelerator

type probeKey struct {
	binary, force string
	timeout       time.Duration
	extra         string
	user          User
}

// ProbeOnce is Probe, remembered per configuration for the life of the
// process. Failures are not remembered.
func ProbeOnce(ctx context.Context, cfg ProbeConfig) (Accelerator, error) {
	cfg.defaults()
	k := probeKey{cfg.Binary, cfg.Force, cfg.Timeout, strings.Join(cfg.ExtraArgs, "\x00"), User{}}
	if cfg.User != nil {
		k.user = *cfg.User
	}
	if a, ok := probed.Load(k); ok {
		return a.(Accelerator), nil
	}
	a, err := Probe(ctx, cfg)
	if err != nil {
		return Accelerator{}, err
	}
	probed.Store(k, a)
	return a, nil
}
