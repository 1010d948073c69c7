package firecracker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
)

// BootOptions says where and how to run Firecracker.
type BootOptions struct {
	Binary     string // default "firecracker" from PATH
	RunDir     string // holds config.json; required
	ConsoleLog string // the guest's serial console (Firecracker's stdout); default RunDir/console.log
}

// Machine is a running Firecracker process.
type Machine struct {
	cmd  *exec.Cmd
	done chan struct{}
	mu   sync.Mutex
	err  error
	log  *os.File
}

// Available reports whether Firecracker can run here: the binary exists and /dev/kvm is
// usable. The error says what is missing.
func Available(binary string) (string, error) {
	if binary == "" {
		binary = "firecracker"
	}
	p, err := exec.LookPath(binary)
	if err != nil {
		return "", fmt.Errorf("no firecracker binary: %w", err)
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("firecracker needs KVM: %w", err)
	}
	f.Close()
	return p, nil
}

// Boot validates c, writes it to RunDir/config.json and starts `firecracker --no-api
// --config-file`. The process is killed when ctx ends; it runs in its own process group
// and dies with this process.
func Boot(ctx context.Context, c *VMConfig, o BootOptions) (*Machine, error) {
	bin, err := Available(o.Binary)
	if err != nil {
		return nil, err
	}
	if err := Validate(c); err != nil {
		return nil, err
	}
	if o.RunDir == "" {
		return nil, fmt.Errorf("firecracker: RunDir is required")
	}
	cfgPath := filepath.Join(o.RunDir, "config.json")
	if err := c.WriteFile(cfgPath); err != nil {
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	if o.ConsoleLog == "" {
		o.ConsoleLog = filepath.Join(o.RunDir, "console.log")
	}
	log, err := os.OpenFile(o.ConsoleLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("firecracker: console log: %w", err)
	}
	m := &Machine{done: make(chan struct{}), log: log}
	m.cmd = exec.Command(bin, "--no-api", "--config-file", cfgPath)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	m.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := m.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("firecracker: %w", err)
	}
	go m.reap()
	go func() {
		select {
		case <-ctx.Done():
			m.Kill()
		case <-m.done:
		}
	}()
	return m, nil
}

func (m *Machine) reap() {
	err := m.cmd.Wait()
	m.mu.Lock()
	m.err = err
	m.mu.Unlock()
	m.log.Close()
	close(m.done)
}

// PID returns the firecracker process ID.
func (m *Machine) PID() int { return m.cmd.Process.Pid }

// Done is closed when Firecracker has exited.
func (m *Machine) Done() <-chan struct{} { return m.done }

// Wait waits for Firecracker to exit and returns its exit error.
func (m *Machine) Wait() error {
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Kill kills Firecracker's process group and waits for it.
func (m *Machine) Kill() {
	select {
	case <-m.done:
		return
	default:
	}
	if err := syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		m.cmd.Process.Kill()
	}
	<-m.done
}
