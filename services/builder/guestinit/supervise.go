package guestinit

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path"
	"syscall"

	"golang.org/x/sys/unix"
)

// ExecStageName is argv[0] of the init binary run as the exec stage.
const ExecStageName = "slipway-exec-stage"

// process is a resolved container process, ready to start.
type process struct {
	path string // inside Root
	argv []string
	env  []string
	dir  string // inside Root
	user *User
}

// prepare composes argv, environment and working directory and finds the
// executable.
func (in *Init) prepare(cfg *Config, c *Cmdline, u *User, hostname string) (*process, error) {
	argv, err := Argv(cfg.Entrypoint, cfg.Cmd, c.Args)
	if err != nil {
		return nil, err
	}
	env := ProcessEnv(cfg.Env, u, hostname)
	dir := path.Clean("/" + cfg.WorkingDir)
	// Docker creates a missing WORKDIR; do the same (as root, like it).
	if err := MkdirAllInRoot(in.Root, dir, 0o755); err != nil {
		return nil, &ExitError{ExitInitError, fmt.Errorf("workdir %s: %w", dir, err)}
	}
	pathEnv, _ := Getenv(env, "PATH")
	exe, err := LookPath(in.Root, argv[0], pathEnv, dir)
	if err != nil {
		return nil, err
	}
	return &process{path: exe, argv: argv, env: env, dir: dir, user: u}, nil
}

// supervise starts the process, announces it, forwards SIGTERM and SIGINT
// to it and reaps every child until it exits; it returns the exit code
// (128+n when killed by signal n).
//
// The process starts as the init binary in its exec stage, which waits on a
// pipe before exec'ing the real program: so the ready line, which names the
// pid, is on the console before the program can write anything.
func (in *Init) supervise(p *process) int {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	defer signal.Stop(sigs)

	pid, release, err := in.start(p)
	if err != nil {
		return in.fail(err)
	}
	fmt.Fprintf(in.Console, "%s pid=%d cmd=%s\n", ReadyLine, pid, p.argv[0])
	if err := release(); err != nil {
		in.logf("releasing the process: %v", err)
	}
	for {
		if code, done := reap(pid); done {
			return code
		}
		if sig := <-sigs; sig != unix.SIGCHLD {
			_ = unix.Kill(pid, sig.(syscall.Signal))
		}
	}
}

// isMachineInit reports whether this init is the machine's: it powers the
// machine off and works on "/" as PID 1. Only that one may hand PID 1 over.
func (in *Init) isMachineInit() bool {
	return in.PowerOff != nil && in.Root == "/" && os.Getpid() == 1
}

// replace makes the process the machine's init: PID 1 execs it, keeping
// the mounts and the console, in its working directory and environment.
// It returns only when the exec fails, with the exit code.
func (in *Init) replace(p *process) int {
	if p.user.UID != 0 {
		return in.fail(&ExitError{ExitInitError, fmt.Errorf("%s runs as the machine's init: it cannot run as user %d", p.argv[0], p.user.UID)})
	}
	if err := os.Chdir(p.dir); err != nil {
		return in.fail(&ExitError{ExitInitError, fmt.Errorf("workdir %s: %w", p.dir, err)})
	}
	signal.Reset()
	fmt.Fprintf(in.Console, "%s pid=%d cmd=%s\n", ReadyLine, os.Getpid(), p.argv[0])
	err := unix.Exec(p.path, p.argv, p.env)
	code := ExitCannotExec
	if errors.Is(err, unix.ENOENT) {
		code = ExitNotFound
	}
	return in.fail(&ExitError{code, fmt.Errorf("exec %s: %w", p.argv[0], err)})
}

// start forks the exec stage and returns its pid and the function that lets
// it exec.
func (in *Init) start(p *process) (int, func() error, error) {
	r, w, err := os.Pipe()
	if err != nil {
		return 0, nil, err
	}
	defer r.Close()
	self := in.Self
	if self == "" {
		self = InitPath
	}
	cred, err := credential(p.user)
	if err != nil {
		w.Close()
		return 0, nil, err
	}
	sys := &syscall.SysProcAttr{Credential: cred, Setsid: true}
	if in.Root != "/" {
		sys.Chroot = in.Root
	}
	stdio, err := in.stdio()
	if err != nil {
		w.Close()
		return 0, nil, err
	}
	attr := &os.ProcAttr{
		Dir:   p.dir,
		Env:   p.env,
		Files: append(stdio, r),
		Sys:   sys,
	}
	argv := append([]string{ExecStageName, p.path}, p.argv...)
	if isTerminal(in.Stdin) {
		// A controlling terminal gives a shell job control and ^C.
		sys.Setctty, sys.Ctty = true, 0
		if proc, err := os.StartProcess(self, argv, attr); err == nil {
			return proc.Pid, releaser(w), nil
		}
		sys.Setctty = false
	}
	proc, err := os.StartProcess(self, argv, attr)
	if err != nil {
		w.Close()
		return 0, nil, &ExitError{ExitCannotExec, fmt.Errorf("starting %s: %w", p.argv[0], err)}
	}
	return proc.Pid, releaser(w), nil
}

// stdio returns the process's standard files, with /dev/null (opened
// outside any chroot) for those not set: the exec stage is a Go program,
// whose runtime aborts when fds 0-2 are closed and it cannot open /dev/null
// itself, which scratch images lack.
func (in *Init) stdio() ([]*os.File, error) {
	files := []*os.File{in.Stdin, in.Stdout, in.Stderr}
	for i, f := range files {
		if f != nil {
			continue
		}
		if in.devNull == nil {
			null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				return nil, &ExitError{ExitInitError, fmt.Errorf("standard file %d unset and %w", i, err)}
			}
			in.devNull = null
		}
		files[i] = in.devNull
	}
	return files, nil
}

// credential is the process's user; an init that is not root (a test) can
// only run it as itself.
func credential(u *User) (*syscall.Credential, error) {
	if os.Geteuid() == 0 {
		return &syscall.Credential{Uid: u.UID, Gid: u.GID, Groups: u.Groups}, nil
	}
	if u.UID != uint32(os.Geteuid()) {
		return nil, &ExitError{ExitInitError, fmt.Errorf("cannot run as uid %d: the init is not root", u.UID)}
	}
	return nil, nil
}

func releaser(w *os.File) func() error {
	return func() error {
		_, err := w.Write([]byte{1})
		if cerr := w.Close(); err == nil {
			err = cerr
		}
		return err
	}
}

func isTerminal(f *os.File) bool {
	if f == nil {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// reap collects every exited child without blocking; done reports that pid
// has exited, with its code.
func reap(pid int) (code int, done bool) {
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil || got <= 0 {
			return code, done
		}
		if got == pid {
			code, done = exitCode(ws), true
		}
	}
}

func exitCode(ws unix.WaitStatus) int {
	if ws.Signaled() {
		return exitSignalShift + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// reapForever is PID 1's life after its process: collect orphans until
// the machine stops.
func reapForever() {
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs, unix.SIGCHLD)
	for {
		reap(-1)
		<-sigs
	}
}

// ExecStage is the init binary run with argv[0] ExecStageName: args are the
// program's path and its argv. It waits for the init's go-ahead on fd 3, then
// replaces itself with the program, keeping pid, credentials, directory and
// environment. It returns only on failure, with the exit code to use.
func ExecStage(args []string) int {
	if len(args) < 2 {
		fmt.Fprintln(os.Stderr, "slipway-init: exec stage: missing program")
		return ExitInitError
	}
	gate := os.NewFile(3, "gate")
	b := make([]byte, 1)
	if n, _ := gate.Read(b); n != 1 {
		return ExitInitError // the init died before the go-ahead
	}
	gate.Close()
	err := unix.Exec(args[0], args[1:], os.Environ())
	fmt.Fprintf(os.Stderr, "slipway-init: exec %s: %v\n", args[0], err)
	if errors.Is(err, unix.ENOENT) {
		return ExitNotFound
	}
	return ExitCannotExec
}
