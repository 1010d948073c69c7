package guestinit

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// Init is one run of the guest init. The zero value of every function field
// turns that duty off, which is how tests run it without being PID 1.
type Init struct {
	// Root is the filesystem the init works on; "/" in a VM. A process
	// is started chrooted into Root when it is not "/".
	Root string
	// Console receives the ReadyLine and ExitLine markers and the log.
	Console io.Writer
	// Stdin, Stdout and Stderr are the process's standard files.
	Stdin, Stdout, Stderr *os.File
	// Cmdline is the kernel command line; when empty it is read from
	// Root/proc/cmdline (after mounting /proc).
	Cmdline string
	// Self is the init binary inside Root, run again as the exec stage
	// (see ExecStage); default InitPath.
	Self string

	// Mount mounts the kernel filesystems and the context disk.
	Mount   MountFunc
	Unmount func(target string, flags int) error
	// OpenConsole reopens the standard files on /dev/console after /dev
	// is mounted (PID 1 only).
	OpenConsole func() error
	// Sethostname sets the hostname.
	Sethostname func(name string) error
	// ConfigureNetwork brings up lo and eth0 from the context.
	ConfigureNetwork func(root string, nc *NetConfig) error
	// ContextDisk looks for the CONTEXT disk (scanning block devices).
	ContextDisk bool
	// PowerOff syncs and powers the machine off (the real one does not
	// return). When nil, Run returns the process's exit code instead of
	// powering off or reaping forever.
	PowerOff func() error
	// Subreaper makes a non-PID-1 init adopt orphaned descendants.
	Subreaper bool

	devNull *os.File // for unset standard files
}

// NewPID1 returns the Init a VM boots: every duty on, on the real machine.
func NewPID1() *Init {
	return &Init{
		Root:    "/",
		Console: os.Stdout,
		Stdin:   os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Mount:            unix.Mount,
		Unmount:          unix.Unmount,
		OpenConsole:      openConsole,
		Sethostname:      func(n string) error { return unix.Sethostname([]byte(n)) },
		ConfigureNetwork: ConfigureNetwork,
		ContextDisk:      true,
		PowerOff: func() error {
			unix.Sync()
			return unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
		},
	}
}

// NewSupervisor returns the Init for a process that is not PID 1 (tests,
// or running inside an existing system): no mounts, hostname, network or
// power off; it runs the container's process, reaps, and returns its code.
func NewSupervisor() *Init {
	return &Init{
		Root:    "/",
		Console: os.Stdout,
		Stdin:   os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr,
		Subreaper: true,
	}
}

func (in *Init) logf(format string, args ...any) {
	fmt.Fprintf(in.Console, "slipway-init: "+format+"\n", args...)
}

func (in *Init) path(p string) string { return filepath.Join(in.Root, p) }

// Run boots: it prepares the system, runs the container's process until it
// exits and returns its exit code — or, with PowerOff set, powers off
// (when the config and command line ask for it) or reaps forever.
func (in *Init) Run() int {
	if in.Mount != nil {
		in.mountEarly()
	}
	if in.OpenConsole != nil {
		if err := in.OpenConsole(); err != nil {
			in.logf("console: %v", err)
		}
	}
	if in.Subreaper {
		_ = unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	}
	code, poweroff := in.boot()
	fmt.Fprintf(in.Console, "%s code=%d\n", ExitLine, code)
	if in.PowerOff == nil {
		return code
	}
	if poweroff {
		err := in.PowerOff()
		if err == nil {
			return code // only an injected PowerOff returns
		}
		in.logf("power off: %v", err)
	} else {
		in.logf("power off disabled: reaping until the machine is stopped")
	}
	reapForever()
	return code
}

// boot does everything up to the process's exit and returns its code and
// whether to power off.
func (in *Init) boot() (code int, poweroff bool) {
	cmdline := in.readCmdline()
	cfg, err := LoadConfig(in.path(ConfigPath))
	if err != nil {
		return in.fail(err), powerOff(cmdline, nil)
	}
	poweroff = powerOff(cmdline, cfg)
	ctx := in.context(cmdline)
	user, err := in.resolveUser(cfg.User)
	if err != nil {
		return in.fail(err), poweroff
	}
	hostname := in.setHostname(cfg, ctx)
	in.network(ctx)
	in.sshKeys(ctx, user)
	in.startScript(ctx)
	p, err := in.prepare(cfg, cmdline, user, hostname)
	if err != nil {
		return in.fail(err), poweroff
	}
	if cfg.Init && in.isMachineInit() {
		return in.replace(p), poweroff
	}
	return in.supervise(p), poweroff
}

// fail logs an error that kept the process from running and returns its
// exit code.
func (in *Init) fail(err error) int {
	in.logf("error: %v", err)
	var xe *ExitError
	if errors.As(err, &xe) {
		return xe.Code
	}
	return ExitInitError
}

func powerOff(c *Cmdline, cfg *Config) bool {
	if c != nil && c.PowerOff != nil {
		return *c.PowerOff
	}
	return cfg == nil || cfg.PowerOffOrDefault()
}

func (in *Init) readCmdline() *Cmdline {
	line := in.Cmdline
	if line == "" {
		b, err := os.ReadFile(in.path("/proc/cmdline"))
		if err != nil && in.Mount != nil {
			in.logf("kernel command line: %v", err)
		}
		line = string(b)
	}
	c, err := ParseCmdline(strings.TrimSpace(line))
	if err != nil {
		in.logf("%v (ignored)", err)
		return &Cmdline{Context: map[string]string{}}
	}
	return c
}

func (in *Init) resolveUser(spec string) (*User, error) {
	pf, passwd, err := openOptional(in.path("/etc/passwd"))
	if err != nil {
		return nil, err
	}
	if pf != nil {
		defer pf.Close()
	}
	gf, group, err := openOptional(in.path("/etc/group"))
	if err != nil {
		return nil, err
	}
	if gf != nil {
		defer gf.Close()
	}
	u, err := ResolveUser(spec, passwd, group)
	if err != nil {
		return nil, &ExitError{ExitInitError, err}
	}
	return u, nil
}

// openConsole puts stdin, stdout and stderr on /dev/console: the kernel only
// does so when /dev/console exists before devtmpfs is mounted.
func openConsole() error {
	fd, err := unix.Open("/dev/console", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("/dev/console: %w", err)
	}
	for i := 0; i < 3; i++ {
		if err := unix.Dup3(fd, i, 0); err != nil {
			return fmt.Errorf("/dev/console: %w", err)
		}
	}
	return unix.Close(fd)
}
