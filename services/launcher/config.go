package launcher

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway/slipway/pkg/defaults"
	"github.com/slipway/slipway/pkg/run"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// Name is the service name: subjects, durable consumer, micro service.
const Name = schemas.ServiceLauncher

// Version is reported by the micro service.
const Version = "0.1.0"

// Defaults of Config.
const (
	DefaultShutdownTimeout = 60 * time.Second
	DefaultQuitGrace       = 10 * time.Second
	DefaultCallTimeout     = 30 * time.Second
	DefaultUploadBucket    = "slipway-uploads"
	DefaultConcurrency     = 4
	DefaultAckWait         = 30 * time.Second
	DefaultMaxDeliver      = 10
	// DefaultConsoleChunk bounds the text one console query returns, well
	// below NATS's default 1 MiB payload even after JSON escaping.
	DefaultConsoleChunk = 256 << 10
)

// Environment variables read by ConfigFromEnv.
const (
	EnvWorkDir         = "SLIPWAY_LAUNCHER_WORK_DIR"
	EnvCacheDir        = "SLIPWAY_LAUNCHER_CACHE_DIR"
	EnvQEMU            = "SLIPWAY_LAUNCHER_QEMU"
	EnvAccel           = "SLIPWAY_LAUNCHER_ACCEL"
	EnvProbeTimeout    = "SLIPWAY_LAUNCHER_PROBE_TIMEOUT"
	EnvShutdownTimeout = "SLIPWAY_LAUNCHER_SHUTDOWN_TIMEOUT"
	EnvReadyTimeout    = "SLIPWAY_LAUNCHER_READY_TIMEOUT"
	EnvUploadBucket    = "SLIPWAY_UPLOAD_BUCKET"
	EnvRestrictedAttr  = "SLIPWAY_LAUNCHER_RESTRICTED_ATTR"
	EnvQEMUUIDs        = "SLIPWAY_LAUNCHER_QEMU_UIDS"
)

// Config tunes the service. The zero value works on a machine with
// qemu-system-x86_64 and qemu-img on PATH.
type Config struct {
	// WorkDir holds one directory per VM (overlays, private copies of
	// persistent disks, LUKS passphrase files, the context ISO, the QMP
	// socket) and the serial console logs (consoles/<vm>.log, kept after
	// the VM ends). QMP sockets live in it too, unless its paths are too
	// long for a unix socket; then in a short directory of os.TempDir().
	// Default /var/lib/slipway/launcher when writable, else
	// <os.TempDir()>/slipway-launcher.
	WorkDir string
	// CacheDir holds image blobs fetched from S3, keyed by image ID and
	// SHA-256 and shared by every VM. Default WorkDir/cache.
	CacheDir string
	// QEMU is the qemu-system binary; default qemu-system-x86_64.
	QEMU string
	// QEMUImg is the qemu-img binary; default qemu-img.
	QEMUImg string
	// Accel is "" (probe every candidate: KVM with -cpu host, KVM with a
	// conservative CPU model, TCG), "kvm" (probe only KVM; none working is an
	// error at start) or "tcg". The probe boots a tiny guest under each
	// candidate at start; the first that prints its line is kept for the
	// launcher's lifetime (see qemu.Probe).
	Accel string
	// ProbeTimeout bounds each candidate's probe boot; default
	// qemu.DefaultProbeTimeout.
	ProbeTimeout time.Duration
	// ShutdownTimeout is how long a gentle poweroff or terminate waits for
	// the guest to power off after the ACPI request before QEMU is told to
	// quit; default 60s.
	ShutdownTimeout time.Duration
	// QuitGrace is how long QEMU gets to exit after QMP quit before it is
	// killed; default 10s.
	QuitGrace time.Duration
	// ReadyTimeout, when positive, fails a VM whose guest has not printed
	// its ready line that long after QEMU started; 0 waits for ever (a guest
	// without Slipway's init stays in BOOT).
	ReadyTimeout time.Duration
	// CallTimeout bounds each exchange with another service (catalog
	// image-use, image-release, image-create; kernel-registry and
	// crypto-luks queries); default 30s.
	CallTimeout time.Duration
	// UploadBucket receives persistent disks at EPILOG and save-as copies
	// (vms/<vm>/…) for the catalog to take; default slipway-uploads.
	UploadBucket string
	// Concurrency is how many commands are handled at once; default 4.
	// Long work (PROLOG downloads, shutdowns, EPILOG uploads) runs beside
	// the command handlers, so a slow VM never blocks another's commands.
	Concurrency int
	// AckWait and MaxDeliver tune the command consumer; defaults 30s, 10.
	AckWait    time.Duration
	MaxDeliver int
	// RestrictedAttr lists the template attributes refused at template create and update
	// and at instantiate, like OpenNebula's VM_RESTRICTED_ATTR: NAME or VECTOR/NAME,
	// comma-separated. "" = vmtemplate.DefaultRestricted (RAW, EMULATOR, OS/KERNEL,
	// OS/INITRD, OS/BOOTLOADER, DISK/SOURCE, CONTEXT/FILES); "none" restricts nothing. A
	// list that omits RAW allows RAW, still checked by qemu.ParseRaw.
	RestrictedAttr string
	// QEMUUIDs is the range "first-last" of numeric uids (gid = uid, no account needed)
	// QEMU runs as when the launcher runs as root: one per running VM, owning only that
	// VM's directory. Default DefaultQEMUUIDs.
	QEMUUIDs string
	// Logger defaults to the bus's logger.
	Logger *slog.Logger
}

func (c *Config) defaults() {
	c.WorkDir = defaults.Path(c.WorkDir, defaultWorkDir)
	c.CacheDir = defaults.Path(c.CacheDir, func() string { return filepath.Join(c.WorkDir, "cache") })
	defaults.Fill(c, Config{QEMU: "qemu-system-x86_64", QEMUImg: "qemu-img",
		ShutdownTimeout: DefaultShutdownTimeout, QuitGrace: DefaultQuitGrace, CallTimeout: DefaultCallTimeout,
		UploadBucket: DefaultUploadBucket, Concurrency: DefaultConcurrency,
		AckWait: DefaultAckWait, MaxDeliver: DefaultMaxDeliver, QEMUUIDs: DefaultQEMUUIDs})
}

// defaultWorkDir prefers the system location, falling back to the temp dir
// for an unprivileged user.
func defaultWorkDir() string {
	const sys = "/var/lib/slipway/launcher"
	// 0711: QEMU, run as unprivileged uids, walks through to its VM directory.
	if err := os.MkdirAll(sys, 0o711); err == nil {
		if os.Geteuid() == 0 { // made 0700 by earlier versions: Slipway's own directory
			if fi, err := os.Stat(filepath.Dir(sys)); err == nil {
				_ = os.Chmod(filepath.Dir(sys), fi.Mode().Perm()|0o001)
			}
		}
		return sys
	}
	return filepath.Join(os.TempDir(), "slipway-launcher")
}

// ConfigFromEnv reads the launcher's variables (see the README); unset ones
// keep New's defaults.
func ConfigFromEnv() (Config, error) {
	cfg := Config{
		WorkDir:      run.Env(EnvWorkDir, ""),
		CacheDir:     run.Env(EnvCacheDir, ""),
		QEMU:         run.Env(EnvQEMU, ""),
		Accel:        run.Env(EnvAccel, ""),
		UploadBucket: run.Env(EnvUploadBucket, ""),
		// Unset keeps the default list; set to "none" to restrict nothing.
		RestrictedAttr: run.Env(EnvRestrictedAttr, ""),
		QEMUUIDs:       run.Env(EnvQEMUUIDs, ""),
	}
	var env run.EnvReader
	cfg.ShutdownTimeout = env.Duration(EnvShutdownTimeout, DefaultShutdownTimeout)
	cfg.ReadyTimeout = env.Duration(EnvReadyTimeout, 0)
	cfg.ProbeTimeout = env.Duration(EnvProbeTimeout, qemu.DefaultProbeTimeout)
	if _, err := qemu.Candidates(cfg.Accel); err != nil {
		env.Check(fmt.Errorf("%s: %w", EnvAccel, err))
	}
	probe := cfg
	probe.defaults()
	env.Check(newConfinement(probe).err)
	return cfg, env.Err()
}
