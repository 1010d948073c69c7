package qemu

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// Timeouts of the QMP connection.
const (
	connectTimeout = 60 * time.Second // QEMU up to the QMP greeting (LUKS key derivation included)
	dialTimeout    = 2 * time.Second
	defaultGrace   = 10 * time.Second
	maxEvents      = 256
)

// ErrExited is returned by QMP calls on a VM whose QEMU has exited.
var ErrExited = errors.New("qemu has exited")

// VM is a running (or finished) QEMU process.
type VM struct {
	cfg  Config
	args []string
	cmd  *exec.Cmd
	mon  *monitor
	out  *tail // QEMU's stdout and stderr, last bytes

	done    chan struct{}
	mu      sync.Mutex
	waitErr error
	reason  string // SHUTDOWN reason, or why we killed it
	killed  bool
	events  []qmp.Event
}

// Start launches QEMU and connects to its QMP socket. The process is killed when ctx ends,
// so ctx must live as long as the VM. On error no process is left, and the error carries
// QEMU's own message (for a wrong LUKS passphrase: "Invalid password, cannot unlock any
// keyslot").
func Start(ctx context.Context, cfg Config) (*VM, error) {
	if cfg.Accel == "" {
		acc, err := ProbeOnce(ctx, ProbeConfig{Binary: cfg.Binary})
		if err != nil {
			return nil, fmt.Errorf("qemu %s: %w", cfg.Name, err)
		}
		cfg.Accel, cfg.CPU = acc.Accel, acc.CPU
	}
	if err := cfg.normalize(); err != nil {
		return nil, fmt.Errorf("qemu %s: %w", cfg.Name, err)
	}
	if err := cfg.confine(); err != nil {
		return nil, fmt.Errorf("qemu %s: %w", cfg.Name, err)
	}
	if cfg.User != nil {
		if err := cfg.handOver(*cfg.User); err != nil {
			return nil, fmt.Errorf("qemu %s: giving its directories to uid %d: %w", cfg.Name, cfg.User.UID, err)
		}
	}
	args, err := cfg.args()
	if err != nil {
		return nil, fmt.Errorf("qemu %s: %w", cfg.Name, err)
	}
	v := &VM{cfg: cfg, args: args, out: &tail{}, done: make(chan struct{})}
	if err := v.launch(ctx); err != nil {
		return nil, err
	}
	if err := v.connect(ctx); err != nil {
		v.Kill()
		return nil, fmt.Errorf("qemu %s did not start: %w", cfg.Name, err)
	}
	return v, nil
}

// launch starts the process in its own process group and the goroutines that reap it and
// kill it when ctx ends.
func (v *VM) launch(ctx context.Context) error {
	p := v.cfg.paths()
	os.Remove(p.qmp)
	os.Remove(p.pid)
	// Opened here (so readers can open it before the guest writes) and handed to QEMU as
	// descriptor 3 (-add-fd): QEMU needs no access to the log's directory.
	console, err := os.OpenFile(p.console, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("qemu %s: console log: %w", v.cfg.Name, err)
	}
	defer console.Close()
	v.cmd = exec.Command(v.cfg.Binary, v.args...)
	v.cmd.Stdout, v.cmd.Stderr = v.out, v.out
	v.cmd.ExtraFiles = []*os.File{console}
	v.cmd.Env = []string{} // no S3 key, no KEK: QEMU needs nothing from ours
	v.cmd.Dir = v.cfg.RunDir
	// Own process group: Kill reaches every thread and helper. PDEATHSIG: if this process
	// dies without cleaning up, the kernel kills QEMU.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL,
		Credential: credential(v.cfg.User)}
	if err := v.cmd.Start(); err != nil {
		return fmt.Errorf("qemu %s: %w", v.cfg.Name, err)
	}
	go v.reap()
	go func() {
		select {
		case <-ctx.Done():
			v.kill("context ended: " + context.Cause(ctx).Error())
		case <-v.done:
		}
	}()
	return nil
}

// reap waits for QEMU, closes the monitor and removes its socket and pid file.
func (v *VM) reap() {
	err := v.cmd.Wait()
	v.mu.Lock()
	v.waitErr = err
	mon := v.mon
	v.mu.Unlock()
	if mon != nil {
		mon.close()
	}
	p := v.cfg.paths()
	os.Remove(p.qmp)
	os.Remove(p.pid)
	close(v.done)
}

// connect dials the QMP socket until QEMU accepts, reads the greeting and negotiates
// capabilities; it gives up when QEMU exits, ctx ends or connectTimeout passes (the
// caller then kills QEMU, which ends a dial in progress).
func (v *VM) connect(ctx context.Context) error {
	type result struct {
		mon *monitor
		err error
	}
	stop := make(chan struct{})
	res := make(chan result, 1)
	connected := false
	defer func() {
		close(stop)
		if !connected { // close a monitor the dialer may still produce
			go func() {
				if r := <-res; r.mon != nil {
					r.mon.close()
				}
			}()
		}
	}()
	go func() {
		for {
			mon, err := dialMonitor(v.cfg.paths().qmp, v.onEvent)
			if err == nil {
				hctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
				err = mon.handshake(hctx)
				cancel()
				if err != nil {
					mon.close()
					mon = nil
				}
				res <- result{mon, err}
				return
			}
			select {
			case <-stop:
				res <- result{nil, err}
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	deadline := time.NewTimer(connectTimeout)
	defer deadline.Stop()
	select {
	case r := <-res:
		connected = true // res is drained
		if r.err != nil {
			return v.startError(fmt.Errorf("QMP: %w", r.err))
		}
		v.mu.Lock()
		v.mon = r.mon
		v.mu.Unlock()
		select {
		case <-v.done: // QEMU exited before v.mon was set: reap could not close it
			r.mon.close()
			return v.exitError()
		default:
		}
		return nil
	case <-v.done:
		return v.exitError()
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-deadline.C:
		return fmt.Errorf("no QMP connection after %v", connectTimeout)
	}
}

// startError prefers QEMU's own exit message to a QMP error when QEMU is exiting (the
// socket closes before the process is reaped).
func (v *VM) startError(err error) error {
	select {
	case <-v.done:
		return v.exitError()
	case <-time.After(5 * time.Second):
		return err
	}
}

// onEvent keeps the last events and the SHUTDOWN reason (called by the monitor's reader).
func (v *VM) onEvent(e qmp.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.events) == maxEvents {
		v.events = append(v.events[:0], v.events[1:]...)
	}
	v.events = append(v.events, e)
	if e.Event == "SHUTDOWN" && v.reason == "" {
		if r, ok := e.Data["reason"].(string); ok {
			v.reason = r
		}
	}
}

// exitError describes how QEMU ended, with its last output lines.
func (v *VM) exitError() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	msg := strings.TrimSpace(v.out.String())
	if v.waitErr == nil {
		if msg == "" {
			return errors.New("qemu exited")
		}
		return fmt.Errorf("qemu exited: %s", msg)
	}
	if msg == "" {
		return v.waitErr
	}
	return fmt.Errorf("%v: %s", v.waitErr, msg)
}

// Args returns QEMU's command line after the binary (it holds no secret: passphrases are
// in files).
func (v *VM) Args() []string { return append([]string(nil), v.args...) }

// PID returns QEMU's process ID.
func (v *VM) PID() int { return v.cmd.Process.Pid }

// ConsoleLog returns the console log path.
func (v *VM) ConsoleLog() string { return v.cfg.paths().console }

// Accel returns the accelerator in use (kvm or tcg).
func (v *VM) Accel() string { return v.cfg.Accel }

// CPU returns the -cpu model in use ("" = QEMU's default).
func (v *VM) CPU() string { return v.cfg.CPU }

// Done is closed when QEMU has exited.
func (v *VM) Done() <-chan struct{} { return v.done }

// Wait waits for QEMU to exit; it returns nil when QEMU exited with status 0 (a guest
// power-off, a QMP quit), else the exit error with QEMU's last output.
func (v *VM) Wait() error {
	<-v.done
	v.mu.Lock()
	failed := v.waitErr != nil
	v.mu.Unlock()
	if !failed {
		return nil
	}
	return v.exitError()
}

// ExitReason says why QEMU ended ("" while it runs): the SHUTDOWN event's reason
// (guest-shutdown, guest-reset, guest-panic, host-qmp-quit, host-signal…), "killed: …"
// when this package killed it, or the exit status and QEMU's last output.
func (v *VM) ExitReason() string {
	select {
	case <-v.done:
	default:
		return ""
	}
	v.mu.Lock()
	reason, killed, failed := v.reason, v.killed, v.waitErr != nil
	v.mu.Unlock()
	switch {
	case killed || reason != "":
		return reason
	case failed:
		return v.exitError().Error()
	}
	return "exited"
}

// Kill kills QEMU (SIGKILL to its process group) and waits for it.
func (v *VM) Kill() error {
	v.kill("killed")
	<-v.done
	return nil
}

func (v *VM) kill(reason string) {
	select {
	case <-v.done:
		return
	default:
	}
	v.mu.Lock()
	if !v.killed {
		v.killed = true
		v.reason = reason
	}
	v.mu.Unlock()
	pid := v.cmd.Process.Pid
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil {
		v.cmd.Process.Kill()
	}
}

// Quit asks QEMU to exit (QMP quit) and waits up to grace (default 10 s; shorter if ctx
// ends first); then it kills it.
func (v *VM) Quit(ctx context.Context, grace time.Duration) error {
	if grace <= 0 {
		grace = defaultGrace
	}
	qctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	err := v.Command(qctx, "quit", nil, nil)
	select {
	case <-v.done:
		return nil
	case <-qctx.Done():
	}
	v.Kill()
	if err != nil && !errors.Is(err, ErrExited) {
		return fmt.Errorf("qemu %s: quit: %w (killed)", v.cfg.Name, err)
	}
	return fmt.Errorf("qemu %s did not quit within %v: killed", v.cfg.Name, grace)
}

// Command runs a raw QMP command; args may be nil; the "return" member is decoded into
// out unless out is nil. It gives up when ctx ends or QEMU exits (ErrExited).
func (v *VM) Command(ctx context.Context, name string, args any, out any) error {
	v.mu.Lock()
	mon := v.mon
	v.mu.Unlock()
	cmd := map[string]any{"execute": name}
	if args != nil {
		cmd["arguments"] = args
	}
	raw, err := mon.call(ctx, cmd)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return decodeReturn(name, raw, out)
}

// Monitor returns the VM's QMP connection as a go-qemu qmp.Monitor, for go-qemu's typed
// APIs (qemu.NewDomain(vm.Monitor(), name), raw.NewMonitor(vm.Monitor())). Its Connect
// and Disconnect do nothing: the VM owns the connection.
func (v *VM) Monitor() qmp.Monitor {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.mon
}

func decodeReturn(name string, raw []byte, out any) error {
	if out == nil {
		return nil
	}
	var r struct {
		Return json.RawMessage `json:"return"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return fmt.Errorf("%s: reply: %w", name, err)
	}
	if err := json.Unmarshal(r.Return, out); err != nil {
		return fmt.Errorf("%s: reply: %w", name, err)
	}
	return nil
}

// recentEvents returns the QMP events seen so far (the last 256).
func (v *VM) recentEvents() []qmp.Event {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]qmp.Event(nil), v.events...)
}

// tail keeps the last 16 KiB written to it; it is safe for concurrent use.
type tail struct {
	mu sync.Mutex
	b  []byte
}

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 16<<10 {
		t.b = append(t.b[:0], t.b[len(t.b)-16<<10:]...)
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
