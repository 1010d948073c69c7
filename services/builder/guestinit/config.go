package guestinit

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
)

// Fixed paths inside the image, as the builder writes them.
const (
	InitPath   = "/.slipway/init"
	ConfigPath = "/.slipway/config.json"
)

// Console markers. A launcher watches the serial console for a line starting
// with ReadyLine ("SLIPWAY-READY pid=<n> cmd=<argv0>") and ExitLine
// ("SLIPWAY-EXIT code=<n>").
const (
	ReadyLine = "SLIPWAY-READY"
	ExitLine  = "SLIPWAY-EXIT"
)

// Exit codes for failures before the container's process runs, as Docker
// uses them.
const (
	ExitInitError   = 125 // bad config, unknown user, unusable workdir
	ExitCannotExec  = 126 // found but not executable
	ExitNotFound    = 127 // not found in PATH
	exitSignalShift = 128 // 128+n: killed by signal n
)

// Config is the container's OCI configuration as the builder writes it to
// ConfigPath.
type Config struct {
	Entrypoint []string `json:"entrypoint,omitempty"`
	Cmd        []string `json:"cmd,omitempty"`
	// Env holds "KEY=value" entries.
	Env []string `json:"env,omitempty"`
	// WorkingDir is the process's working directory; empty means "/".
	WorkingDir string `json:"workdir,omitempty"`
	// User is "uid[:gid]" or "name[:group]"; empty means root.
	User     string `json:"user,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	// PowerOff says whether the VM powers off when the process exits;
	// nil means true. The kernel command line's slipway.poweroff wins.
	PowerOff *bool `json:"poweroff,omitempty"`
	// Init says the process is the system's own init (a rootfs's
	// /sbin/init: systemd, busybox init and sysvinit insist on PID 1).
	// Once the system is prepared (mounts, hostname, network, SSH keys,
	// start script), PID 1 execs it instead of supervising it. An init
	// that is not PID 1 (NewSupervisor, tests) supervises it as usual.
	Init bool `json:"init,omitempty"`
}

// PowerOffOrDefault reports c.PowerOff, true when unset.
func (c *Config) PowerOffOrDefault() bool {
	return c.PowerOff == nil || *c.PowerOff
}

// ParseConfig decodes and checks a Config.
func ParseConfig(r io.Reader) (*Config, error) {
	var c Config
	dec := json.NewDecoder(r)
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	for i, kv := range c.Env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, fmt.Errorf("container config: env[%d] %q is not KEY=value", i, kv)
		}
	}
	return &c, nil
}

// LoadConfig reads the Config at path.
func LoadConfig(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("container config: %w", err)
	}
	defer f.Close()
	c, err := ParseConfig(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// DeviceNode is a character device the image must hold before the init
// runs.
type DeviceNode struct {
	Path         string
	Major, Minor uint32
	Mode         uint32 // permission bits
}

// RequiredDevices are the nodes the builder must put in the image's /dev.
// The kernel opens /dev/console for PID 1's standard files before any
// devtmpfs is mounted (Debian kernels do not set DEVTMPFS_MOUNT), and a Go
// program whose fds 0-2 are closed opens /dev/null at start-up and aborts
// if it cannot: without these two nodes the init dies before main.
var RequiredDevices = []DeviceNode{
	{Path: "/dev/console", Major: 5, Minor: 1, Mode: 0o600},
	{Path: "/dev/null", Major: 1, Minor: 3, Mode: 0o666},
}
