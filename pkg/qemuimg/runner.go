package qemuimg

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/inspect"
	"github.com/slipway/slipway/pkg/run"
)

// Defaults for Runner's zero fields.
const (
	DefaultBinary              = "qemu-img"
	DefaultCPUSeconds          = 30
	DefaultConvertCPUSeconds   = 3600
	DefaultAddressSpace        = 1 << 30
	DefaultConvertAddressSpace = 4 << 30
	DefaultNice                = 10
)

// ErrPath marks a path refused before qemu-img could see it.
var ErrPath = errors.New("path refused")

// Runner runs qemu-img with limits. The zero value is ready to use. It is
// the one way Slipway runs qemu-img on disks it did not write itself: the
// converter, crypto-luks and the launcher all go through it.
type Runner struct {
	Binary              string // qemu-img executable; default "qemu-img"
	CPUSeconds          int    // CPU-time limit of Light calls (info, check, measure); default 30
	ConvertCPUSeconds   int    // CPU-time limit of Heavy calls (convert, create); default 3600
	AddressSpace        int64  // address-space limit of Light calls; default 1 GiB
	ConvertAddressSpace int64  // address-space limit of Heavy calls; default 4 GiB
	Nice                int    // niceness added to qemu-img; default 10, negative: none
}

// Limits bound one qemu-img process (prlimit's --cpu and --as).
type Limits struct {
	CPUSeconds   int   // CPU time, in seconds
	AddressSpace int64 // address space, in bytes
}

// Light returns the limits of a call that reads headers and metadata:
// info, check, measure.
func (r *Runner) Light() Limits {
	return Limits{CPUSeconds: defaults.Positive(r.CPUSeconds, DefaultCPUSeconds), AddressSpace: defaults.Positive(r.AddressSpace, DefaultAddressSpace)}
}

// Heavy returns the limits of a call that reads or writes a whole image:
// convert, create.
func (r *Runner) Heavy() Limits {
	return Limits{CPUSeconds: defaults.Positive(r.ConvertCPUSeconds, DefaultConvertCPUSeconds), AddressSpace: defaults.Positive(r.ConvertAddressSpace, DefaultConvertAddressSpace)}
}

// orLight fills lim's zero fields with the runner's Light limits: a call
// never runs without a bound.
func (r *Runner) orLight(lim Limits) Limits {
	l := r.Light()
	return Limits{CPUSeconds: defaults.Positive(lim.CPUSeconds, l.CPUSeconds), AddressSpace: defaults.Positive(lim.AddressSpace, l.AddressSpace)}
}

// CheckPath refuses anything but a clean absolute local path: qemu treats
// "json:{…}" and "proto:…" filenames as instructions, not files.
func CheckPath(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty path", ErrPath)
	case strings.HasPrefix(p, "json:"):
		return fmt.Errorf("%w: %q is a json: pseudo-filename; only local paths are accepted", ErrPath, p)
	case !filepath.IsAbs(p):
		return fmt.Errorf("%w: %q is not an absolute path", ErrPath, p)
	case strings.ContainsAny(p, ":\x00\n\r"):
		return fmt.Errorf("%w: %q contains ':' or a control character, which qemu may read as a protocol prefix or option", ErrPath, p)
	case filepath.Clean(p) != p:
		return fmt.Errorf("%w: %q is not a clean path", ErrPath, p)
	}
	return nil
}

// Command builds `prlimit --as=N --cpu=N -- nice -n N qemu-img args…`
// under lim (a zero field takes the Light limit) with run.ChildEnv as its
// whole environment, in its own process group, which cancelling ctx kills.
// The caller sets Stdout and Stderr and runs it; Run and Stream do that and
// describe a failure. The caller is also the one that checks args: explicit
// formats, and paths through CheckPath.
func (r *Runner) Command(ctx context.Context, lim Limits, args ...string) *exec.Cmd {
	lim = r.orLight(lim)
	bin := r.Binary
	if bin == "" {
		bin = DefaultBinary
	}
	argv := []string{"--as=" + strconv.FormatInt(lim.AddressSpace, 10), "--cpu=" + strconv.Itoa(lim.CPUSeconds), "--"}
	nice := r.Nice
	if nice == 0 {
		nice = DefaultNice
	}
	if nice > 0 {
		argv = append(argv, "nice", "-n", strconv.Itoa(nice))
	}
	argv = append(argv, bin)
	argv = append(argv, args...)
	cmd := exec.CommandContext(ctx, "prlimit", argv...)
	cmd.Env = run.ChildEnv() // a parser of hostile disks gets none of our secrets
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// prlimit and nice exec qemu-img, but kill the whole group anyway in
		// case anything forked.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// Run runs qemu-img args under lim and returns its stdout (at most 16 MiB).
// A failure names the subcommand, the limit qemu-img hit if it hit one, and
// the end of its stderr; an *exec.ExitError stays reachable with errors.As.
func (r *Runner) Run(ctx context.Context, lim Limits, args ...string) ([]byte, error) {
	var stdout bytes.Buffer
	err := r.Stream(ctx, lim, &limitedWriter{w: &stdout, n: 16 << 20}, args...)
	return stdout.Bytes(), err
}

// Stream is Run with qemu-img's stdout written to w as it comes (for -p
// progress); nil discards it.
func (r *Runner) Stream(ctx context.Context, lim Limits, w io.Writer, args ...string) error {
	lim = r.orLight(lim)
	stderr := &tailBuffer{max: 8 << 10}
	cmd := r.Command(ctx, lim, args...)
	cmd.Stdout = w
	cmd.Stderr = stderr
	if err := cmd.Run(); err != nil {
		return runError(ctx, args, err, stderr.String(), lim)
	}
	return nil
}

// runError describes a failed qemu-img call, naming the limit it hit when
// the kernel killed it for one.
func runError(ctx context.Context, args []string, err error, stderr string, lim Limits) error {
	verb := "qemu-img"
	if len(args) > 0 {
		verb += " " + args[0]
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", verb, ctx.Err())
	}
	msg := strings.TrimSpace(stderr)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			switch ws.Signal() {
			case syscall.SIGXCPU, syscall.SIGKILL:
				return fmt.Errorf("%s: killed by %v (CPU limit %d s): %s", verb, ws.Signal(), lim.CPUSeconds, msg)
			}
		}
		if isMemoryError(msg) {
			return fmt.Errorf("%s: out of memory under the address-space limit of %s: %s", verb, inspect.HumanBytes(uint64(lim.AddressSpace)), msg)
		}
	}
	if msg == "" {
		return fmt.Errorf("%s: %w", verb, err)
	}
	return fmt.Errorf("%s: %w: %s", verb, err, msg)
}

func isMemoryError(msg string) bool {
	m := strings.ToLower(msg)
	for _, s := range []string{"cannot allocate memory", "out of memory", "failed to allocate", "error while loading shared libraries", "mmap"} {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// tailBuffer keeps the last max bytes written: qemu-img's stderr is small,
// but a hostile image must not make us buffer without bound.
type tailBuffer struct {
	buf []byte
	max int
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.max {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string { return string(t.buf) }

// limitedWriter fails once n bytes have been written.
type limitedWriter struct {
	w io.Writer
	n int64
}

func (l *limitedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > l.n {
		return 0, errors.New("qemu-img output too large")
	}
	l.n -= int64(len(p))
	return l.w.Write(p)
}
