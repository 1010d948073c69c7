package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/pkg/qemuimg"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

const (
	dedupTTL            = 24 * time.Hour
	maxSocketPathLength = 100 // sun_path is 108 bytes with its NUL; keep a margin
)

// Service is the launcher. Create it with New and start it with Run.
type Service struct {
	bus   *bus.Bus
	blobs *blob.Store
	cfg   Config
	log   *slog.Logger

	templates *kvstore.Store[int64, schemas.VMTemplate]
	vms       *kvstore.Store[int64, vmRecord]
	dedup     jetstream.KeyValue
	cache     *blobCache
	// accel is what the probe chose at Run's start, kept for the
	// launcher's lifetime.
	accel qemu.Accelerator
	// conf holds the restricted attributes and QEMU's uids.
	conf *confinement
	// img runs every qemu-img call (overlays, save-as copies, offline
	// snapshots, sizes at EPILOG), confined: the runner the converter and
	// crypto-luks use, with Config.QEMUImg as its binary.
	img *qemuimg.Runner

	// life is the context of the VMs' goroutines and QEMU processes: it
	// ends when Run returns, and QEMU with it.
	life     context.Context
	mu       sync.Mutex
	machines map[int64]*machine
	wg       sync.WaitGroup

	ready     chan struct{}
	readyOnce sync.Once
}

// New returns a launcher talking over b (which must belong to the
// "launcher" service) and reading and writing blobs in store.
func New(b *bus.Bus, store *blob.Store, cfg Config) *Service {
	cfg.defaults()
	log := cfg.Logger
	if log == nil {
		log = b.Logger()
	}
	return &Service{bus: b, blobs: store, cfg: cfg, log: log,
		machines: map[int64]*machine{}, ready: make(chan struct{}), conf: newConfinement(cfg),
		img: &qemuimg.Runner{Binary: cfg.QEMUImg}}
}

// Ready is closed once Run consumes commands and answers queries.
func (s *Service) Ready() <-chan struct{} { return s.ready }

// Config returns the configuration in effect (defaults filled in).
func (s *Service) Config() Config { return s.cfg }

// Run sets up the KV buckets and directories, settles the VMs a previous
// run left behind (their QEMU is gone), then consumes commands and answers
// queries until ctx ends. QEMU processes end with it: VMs then running are
// recorded POWEROFF.
func (s *Service) Run(ctx context.Context) error {
	if s.bus.Service() != Name {
		return fmt.Errorf("launcher: the bus belongs to service %q, want %q", s.bus.Service(), Name)
	}
	if s.conf.err != nil {
		return fmt.Errorf("launcher: %w", s.conf.err)
	}
	if err := s.chooseAccelerator(ctx); err != nil {
		return err
	}
	unlock, err := s.setup(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	life, stopVMs := context.WithCancel(context.WithoutCancel(ctx))
	s.life = life
	defer func() {
		stopVMs()
		s.wg.Wait()
	}()
	if err := s.reconcile(ctx); err != nil {
		return fmt.Errorf("launcher: settle VMs left by the previous run: %w", err)
	}
	cons, err := s.bus.ConsumeCommands(ctx, s.handle, bus.AckWait(s.cfg.AckWait),
		bus.MaxDeliver(s.cfg.MaxDeliver), bus.Concurrency(s.cfg.Concurrency))
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return fmt.Errorf("launcher: consume commands: %w", err)
	}
	defer cons.Stop()
	svc, err := s.bus.Serve(Version, "Boots VMs from templates with QEMU", s.endpoints())
	if err != nil {
		return fmt.Errorf("launcher: serve queries: %w", err)
	}
	defer func() { _ = svc.Stop() }()
	s.readyOnce.Do(func() { close(s.ready) })
	s.log.Info("launcher running", "work_dir", s.cfg.WorkDir, "cache_dir", s.cfg.CacheDir, "qemu", s.cfg.QEMU,
		"accel", s.accel.Accel, "cpu", s.accel.CPU)
	<-ctx.Done()
	return nil
}

// chooseAccelerator proves which accelerator runs guests by booting the
// probe guest under each candidate (see qemu.Probe) and logs the choice and
// every candidate passed over, with why.
func (s *Service) chooseAccelerator(ctx context.Context) error {
	user, err := s.conf.probeUser()
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	acc, err := qemu.ProbeOnce(ctx, qemu.ProbeConfig{Binary: s.cfg.QEMU, Force: s.cfg.Accel, Timeout: s.cfg.ProbeTimeout, User: user})
	if err != nil {
		if s.cfg.Accel != "" {
			return fmt.Errorf("launcher: %s=%s: %w", EnvAccel, s.cfg.Accel, err)
		}
		return fmt.Errorf("launcher: %w", err)
	}
	for _, r := range acc.PassedOver {
		s.log.Warn("accelerator passed over", "accel", r.Accel, "cpu", r.CPU, "reason", r.Reason)
	}
	s.log.Info("accelerator chosen", "accel", acc.Accel, "cpu", acc.CPU, "forced", s.cfg.Accel != "", "probe", acc.Explain())
	s.accel = acc
	return nil
}

// Accelerator returns what the probe chose (zero before Run has probed).
func (s *Service) Accelerator() qemu.Accelerator { return s.accel }

// acceleratorRecord is the probe's choice as VM records show it.
func (s *Service) acceleratorRecord() *schemas.VMAccelerator {
	r := &schemas.VMAccelerator{Accel: schemas.VMAccel(s.accel.Accel), Cpu: s.accel.CPU}
	for _, p := range s.accel.PassedOver {
		r.PassedOver = append(r.PassedOver, schemas.VMAcceleratorCandidate{
			Accel: schemas.VMAccel(p.Accel), Cpu: p.CPU, Reason: p.Reason})
	}
	return r
}

// setup makes the buckets and directories and locks the work directory
// against a second launcher.
func (s *Service) setup(ctx context.Context) (unlock func(), err error) {
	if err := s.bus.Setup(ctx); err != nil {
		return nil, fmt.Errorf("launcher setup: %w", err)
	}
	kv := func(name string, ttl time.Duration) (jetstream.KeyValue, error) {
		return s.bus.KeyValue(ctx, schemas.BucketName(s.bus.Prefix(), name), ttl)
	}
	tkv, err := kv(schemas.BucketLauncherTemplates, 0)
	if err != nil {
		return nil, fmt.Errorf("launcher setup: %w", err)
	}
	vkv, err := kv(schemas.BucketLauncherVMs, 0)
	if err != nil {
		return nil, fmt.Errorf("launcher setup: %w", err)
	}
	if s.dedup, err = kv(schemas.BucketLauncherDedup, dedupTTL); err != nil {
		return nil, fmt.Errorf("launcher setup: %w", err)
	}
	s.templates = kvstore.New[int64](tkv, kvstore.Config[schemas.VMTemplate]{What: "template"})
	s.vms = kvstore.New[int64](vkv, kvstore.Config[vmRecord]{What: "VM"})
	for _, d := range []string{s.cfg.WorkDir, s.vmsDir(), s.consoleDir(), s.cfg.CacheDir} {
		mode := os.FileMode(0o700)
		if s.conf.switchUser && d != s.consoleDir() {
			mode = 0o711 // parents made here must let QEMU's uids through too
		}
		if err := os.MkdirAll(d, mode); err != nil {
			return nil, fmt.Errorf("launcher setup: %w", err)
		}
	}
	if s.conf.switchUser {
		// QEMU's uid walks through these to its VM directory and the cached images (files
		// 0444); it can neither list them nor write in them. Consoles stay 0700: QEMU gets
		// its console log as a descriptor.
		for _, d := range []string{s.cfg.WorkDir, s.vmsDir(), s.cfg.CacheDir} {
			if err := os.Chmod(d, 0o711); err != nil {
				return nil, fmt.Errorf("launcher setup: %w", err)
			}
		}
		for d, setting := range map[string]string{s.cfg.WorkDir: EnvWorkDir, s.cfg.CacheDir: EnvCacheDir} {
			if err := searchable(d, setting); err != nil {
				return nil, fmt.Errorf("launcher setup: %w", err)
			}
		}
	}
	s.cache = newBlobCache(s.cfg.CacheDir, s.blobs)
	return lockDir(s.cfg.WorkDir)
}

// lockDir holds an flock on dir/.lock: two launchers on one work directory
// would each take the other's VMs for orphans.
func lockDir(dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("launcher setup: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("launcher setup: work dir %s is in use by another launcher: %w", dir, err)
	}
	return func() { f.Close() }, nil
}

// runDir is where QEMU's QMP socket and pid file go: the VM directory,
// unless its path is too long for a unix socket (108 bytes), then a short
// directory in the system temp dir named after the work dir.
func (s *Service) runDir(id int64) string {
	if d := s.vmDir(id); len(d)+len("/qmp.sock") <= maxSocketPathLength {
		return d
	}
	sum := sha256.Sum256([]byte(s.cfg.WorkDir))
	return filepath.Join(os.TempDir(), "slipway-launcher-"+hex.EncodeToString(sum[:4]), idKey(id))
}

func (s *Service) vmsDir() string             { return filepath.Join(s.cfg.WorkDir, "vms") }
func (s *Service) consoleDir() string         { return filepath.Join(s.cfg.WorkDir, "consoles") }
func (s *Service) vmDir(id int64) string      { return filepath.Join(s.vmsDir(), idKey(id)) }
func (s *Service) consoleLog(id int64) string { return filepath.Join(s.consoleDir(), idKey(id)+".log") }

// handlers maps each verb to its handler.
func (s *Service) handlers() map[string]func(context.Context, *bus.Msg) error {
	return map[string]func(context.Context, *bus.Msg) error{
		schemas.CommandLauncherTemplateCreate:     s.templateCreate,
		schemas.CommandLauncherTemplateUpdate:     s.templateUpdate,
		schemas.CommandLauncherTemplateDelete:     s.templateDelete,
		schemas.CommandLauncherTemplateChmod:      s.templateChmod,
		schemas.CommandLauncherTemplateChown:      s.templateChown,
		schemas.CommandLauncherTemplateChgrp:      s.templateChgrp,
		schemas.CommandLauncherInstantiate:        s.instantiate,
		schemas.CommandLauncherTerminate:          s.terminateCmd,
		schemas.CommandLauncherPoweroff:           s.poweroffCmd,
		schemas.CommandLauncherResume:             s.resumeCmd,
		schemas.CommandLauncherDiskSnapshot:       s.diskSnapshotCmd,
		schemas.CommandLauncherDiskSaveAs:         s.diskSaveAsCmd,
		schemas.CommandLauncherDiskSnapshotRevert: s.diskSnapshotRevertCmd,
		schemas.CommandLauncherDiskSnapshotDelete: s.diskSnapshotDeleteCmd,
	}
}

// handle validates a command and runs it. A refused command gets a failed
// event and is terminated; other errors are retried.
func (s *Service) handle(ctx context.Context, m *bus.Msg) error {
	h, ok := s.handlers()[m.Name]
	if !ok {
		return s.reject(ctx, m, refuse(nil, "the launcher has no command %q (commands: %s)", m.Name, strings.Join(bus.Commands(Name), ", ")))
	}
	if err := schemas.Validate(schemas.KindCommand, Name, m.Name, m.Data); err != nil {
		return s.reject(ctx, m, &refusal{err: err})
	}
	ctx = withSender(ctx)
	if err := s.authorize(ctx, m); err != nil {
		if isRefusal(err) {
			return s.reject(ctx, m, err)
		}
		return err
	}
	err := h(ctx, m)
	if isRefusal(err) {
		return s.reject(ctx, m, err)
	}
	return err
}

// refusal is an error the sender caused: the command is refused with a
// failed event and not retried. ID is the VM or template concerned.
type refusal struct {
	id  *int64
	err error
}

func (r *refusal) Error() string { return r.err.Error() }
func (r *refusal) Unwrap() error { return r.err }

func refuse(id *int64, format string, args ...any) error {
	return &refusal{id: id, err: fmt.Errorf(format, args...)}
}

// missing refuses a command naming a VM or template that does not exist
// (code not-found).
func missing(id *int64, format string, args ...any) error {
	return &refusal{id: id, err: bus.WithCode(schemas.CodeNotFound, fmt.Errorf(format, args...))}
}

func isRefusal(err error) bool {
	var r *refusal
	return errors.As(err, &r)
}

// reject publishes the failed event of a command and terminates it.
func (s *Service) reject(ctx context.Context, m *bus.Msg, cause error) error {
	var r *refusal
	var id *int64
	if errors.As(cause, &r) {
		id = r.id
	}
	subject := "cmd-" + strconv.FormatUint(m.StreamSeq, 10)
	if id != nil {
		subject = idKey(*id)
	}
	s.log.Warn("command refused", "subject", m.Subject, "ce_id", m.Envelope.ID, "err", cause)
	ev := schemas.Failure{Code: bus.CodeOr(cause, schemas.CodeConflict), ID: id, Command: m.Subject, Error: schemas.ErrorText(cause.Error())}
	if _, err := s.bus.Event(ctx, schemas.EventLauncherFailed, subject, ev, causedBy(m.Envelope, schemas.EventLauncherFailed)...); err != nil {
		return fmt.Errorf("publish failed event for %s: %w (refusal: %v)", m.Subject, err, cause)
	}
	return bus.Terminal(cause)
}
