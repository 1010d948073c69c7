package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// Shorthands for the states.
const (
	stPending  = schemas.VMStatePending
	stProlog   = schemas.VMStateProlog
	stBoot     = schemas.VMStateBoot
	stRunning  = schemas.VMStateRunning
	stPoweroff = schemas.VMStatePoweroff
	stEpilog   = schemas.VMStateEpilog
	stDone     = schemas.VMStateDone
	stFailed   = schemas.VMStateFailed
)

// settleTimeout bounds the KV writes and calls that record what happened
// to a VM after the service's context has ended (30s; tests shorten it).
var settleTimeout atomic.Int64

func init() { settleTimeout.Store(int64(30 * time.Second)) }

// settleCtx is a context for recording a VM's fate that survives the end
// of the service's own.
func settleCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), time.Duration(settleTimeout.Load()))
}

// deploy takes a PENDING VM through PROLOG to BOOT; the watcher takes it
// to RUNNING.
func (s *Service) deploy(m *machine, c cause) {
	m.op.Lock()
	defer m.op.Unlock()
	ctx := s.life
	rec, err := s.transition(ctx, m.id, []schemas.VMState{stPending}, stProlog, "", c, nil)
	if err != nil {
		var ws *wrongState
		if !errors.As(err, &ws) { // a wrong state: terminated before it started
			s.log.Error("VM deploy: cannot start PROLOG", "vm", m.id, "err", err)
		}
		return
	}
	act, done := m.startAct(ctx)
	plan, err := s.prolog(act, rec)
	cancelled := act.Err() != nil
	done()
	if err != nil {
		if cancelled && m.isEnding() {
			// terminate takes over once we let go of m.op: it releases
			// what PROLOG took and removes the files.
			return
		}
		if ctx.Err() != nil {
			return // the launcher is stopping; the next start settles the VM
		}
		s.fail(m, fmt.Sprintf("PROLOG: %v", err), c)
		return
	}
	rec, err = s.transition(ctx, m.id, []schemas.VMState{stProlog}, stBoot, "", c, func(r *vmRecord) error {
		plan.describe(r)
		r.Run.Plan = plan
		return nil
	})
	if err != nil {
		s.fail(m, fmt.Sprintf("BOOT: %v", err), c)
		return
	}
	if err := s.boot(ctx, m, rec, c); err != nil {
		s.fail(m, fmt.Sprintf("BOOT: %v", err), c)
	}
}

// boot starts QEMU for a VM in BOOT and the watcher that follows it.
func (s *Service) boot(ctx context.Context, m *machine, rec *vmRecord, c cause) error {
	plan := rec.Run.Plan
	if plan == nil {
		return errors.New("nothing was prepared for this VM (its PROLOG did not finish)")
	}
	cfg := plan.QEMU
	cfg.Binary, cfg.Accel, cfg.CPU = s.cfg.QEMU, s.accel.Accel, s.accel.CPU
	cfg.RunDir = s.runDir(rec.ID)
	cfg.ConsoleLog = s.consoleLog(rec.ID)
	cfg.VMDir = s.vmDir(rec.ID)
	cfg.ImageDirs = []string{s.cfg.CacheDir}
	if _, err := os.Stat(cfg.VMDir); err != nil {
		return fmt.Errorf("the VM's directory is gone: %w", err)
	}
	if err := os.MkdirAll(cfg.RunDir, 0o700); err != nil {
		return err
	}
	if cfg.RunDir != cfg.VMDir { // the short socket directory in the temp dir
		if err := os.Chmod(filepath.Dir(cfg.RunDir), 0o711); err != nil {
			return err
		}
	}
	owner, err := s.conf.assign(rec.ID)
	if err != nil {
		return err
	}
	if owner != nil {
		cfg.User = &qemu.User{UID: owner.uid, GID: owner.uid}
	}
	offset := fileSize(cfg.ConsoleLog) // the log is appended to across boots
	qctx, stop := context.WithCancel(s.life)
	vm, err := qemu.Start(qctx, cfg)
	if err != nil {
		stop()
		s.conf.release(rec.ID, owner, cfg.VMDir, cfg.RunDir)
		return err
	}
	go func() {
		<-vm.Done()
		s.conf.release(rec.ID, owner, cfg.VMDir, cfg.RunDir)
	}()
	m.setQEMU(vm, stop)
	if _, _, err := s.vms.Update(ctx, rec.ID, func(r *vmRecord) error {
		r.Run.PID = vm.PID()
		r.Accelerator = s.acceleratorRecord()
		return nil
	}); err != nil {
		s.log.Warn("recording QEMU's pid failed", "vm", rec.ID, "err", err)
	}
	s.spawn(func() { s.watch(m, vm, offset, c) })
	return nil
}

// watch follows one QEMU run: the ready line makes the VM RUNNING; QEMU
// exiting by itself makes it POWEROFF (or FAILED when QEMU failed). The
// console is read once more after QEMU exits, so a guest that says it is
// ready and powers off at once still passes through RUNNING.
func (s *Service) watch(m *machine, vm *qemu.VM, offset int64, c cause) {
	scan := newConsoleScanner(vm.ConsoleLog(), offset)
	tick := time.NewTicker(consolePoll)
	defer tick.Stop()
	var timeout <-chan time.Time
	if s.cfg.ReadyTimeout > 0 {
		t := time.NewTimer(s.cfg.ReadyTimeout)
		defer t.Stop()
		timeout = t.C
	}
	ready := false
	check := func() {
		if line, ok := scan.next(); ok && !ready {
			ready, timeout = true, nil
			s.onReady(m, vm, line, c)
		}
	}
	for {
		select {
		case <-tick.C:
			check()
		case <-timeout:
			s.onReadyTimeout(m, vm, c)
			return
		case <-vm.Done():
			check()
			s.onExit(m, vm, c)
			return
		}
	}
}

func (s *Service) onReady(m *machine, vm *qemu.VM, line string, c cause) {
	m.op.Lock()
	defer m.op.Unlock()
	if !m.owns(vm) {
		return
	}
	ctx, cancel := settleCtx()
	defer cancel()
	reason := "the guest init is ready: " + line
	if _, err := s.transition(ctx, m.id, []schemas.VMState{stBoot}, stRunning, reason, c, nil); err != nil {
		s.log.Warn("VM ready but not recorded RUNNING", "vm", m.id, "err", err)
	}
}

func (s *Service) onReadyTimeout(m *machine, vm *qemu.VM, c cause) {
	m.op.Lock()
	defer m.op.Unlock()
	if !m.owns(vm) {
		return
	}
	s.fail(m, fmt.Sprintf("BOOT: the guest printed no %s line within %s (see `slipway vm console %d`)", ReadyLine, s.cfg.ReadyTimeout, m.id), c)
}

// onExit handles QEMU ending without the launcher asking: the guest
// powered off (POWEROFF, disks kept) or QEMU failed (FAILED).
func (s *Service) onExit(m *machine, vm *qemu.VM, c cause) {
	m.op.Lock()
	defer m.op.Unlock()
	if !m.owns(vm) {
		return // an operation stopped it and records the outcome
	}
	m.clearQEMU()
	ctx, cancel := settleCtx()
	defer cancel()
	exitErr := vm.Wait()
	why := vm.ExitReason()
	switch {
	case s.life.Err() != nil:
		why = "the launcher stopped, and QEMU with it; resume boots the VM again"
	case exitErr == nil:
		why = "the guest powered off (" + why + ")"
	default:
		s.fail(m, fmt.Sprintf("QEMU ended: %s", why), c)
		return
	}
	_, err := s.transition(ctx, m.id, []schemas.VMState{stBoot, stRunning}, stPoweroff, why, c, func(r *vmRecord) error {
		r.Run.PID = 0
		return nil
	})
	if err != nil {
		s.log.Warn("QEMU exited but the VM was not recorded POWEROFF", "vm", m.id, "err", err)
	}
}

// stopQEMU ends the VM's QEMU: an ACPI power-down first unless hard,
// then QMP quit, then a kill. It says how it went.
func (s *Service) stopQEMU(m *machine, hard bool) string {
	vm := m.qemu()
	if vm == nil {
		return ""
	}
	m.setExpectExit()
	defer m.clearQEMU()
	ctx, cancel := settleCtx()
	defer cancel()
	if !hard {
		if err := vm.Powerdown(ctx); err == nil {
			select {
			case <-vm.Done():
				return "the guest powered off on the ACPI request"
			case <-time.After(s.cfg.ShutdownTimeout):
			}
		}
		if err := vm.Quit(ctx, s.cfg.QuitGrace); err != nil {
			_ = vm.Kill()
		}
		return fmt.Sprintf("the guest did not power off within %s of the ACPI request: QEMU was stopped", s.cfg.ShutdownTimeout)
	}
	if err := vm.Quit(ctx, s.cfg.QuitGrace); err != nil {
		_ = vm.Kill()
	}
	return "QEMU was stopped (hard)"
}

// terminate ends a VM from any state but DONE: EPILOG → DONE.
func (s *Service) terminate(m *machine, hard bool, c cause, accept func(error)) {
	m.interrupt() // a PROLOG in progress gives up m.op soon
	m.op.Lock()
	defer m.op.Unlock()
	ctx, cancel := settleCtx()
	defer cancel()
	var from schemas.VMState
	rec, err := s.transition(ctx, m.id, nil, stEpilog, "terminate", c, func(r *vmRecord) error {
		from = r.State
		switch r.State {
		case stDone:
			return refuse(&m.id, "VM %d is DONE already", m.id)
		case stEpilog:
			return kvstore.ErrNoChange // an earlier terminate died half way: finish it
		}
		return nil
	})
	if err != nil {
		accept(err)
		return
	}
	accept(nil)
	how := s.stopQEMU(m, hard)
	// A FAILED VM's changes are not kept: its failure may have left the
	// disks in any state.
	save := from != stFailed && from != stPending && from != stProlog
	// Writing persistent disks back takes what their size needs: the
	// epilog runs for the service's life, not on a bookkeeping deadline
	// (which a guest ignoring ACPI may already have spent). A stop in the
	// middle leaves the VM in EPILOG, which the reconciler finishes.
	reason, err := s.epilog(s.life, rec, save)
	if s.life.Err() != nil {
		return
	}
	ectx, ecancel := settleCtx()
	defer ecancel()
	if err != nil {
		s.fail(m, fmt.Sprintf("EPILOG: %v", err), c)
		return
	}
	if how != "" {
		reason = how + "; " + reason
	}
	if _, err := s.transition(ectx, m.id, []schemas.VMState{stEpilog}, stDone, reason, c, func(r *vmRecord) error {
		r.Run.Locks, r.Run.PID, r.Run.Plan = nil, 0, nil
		return nil
	}); err != nil {
		s.log.Error("VM terminated but not recorded DONE", "vm", m.id, "err", err)
		return
	}
	s.forget(m.id)
}

// poweroff stops a booted VM's QEMU and keeps its disks: POWEROFF.
func (s *Service) poweroff(m *machine, hard bool, c cause, accept func(error)) {
	m.op.Lock()
	defer m.op.Unlock()
	ctx, cancel := settleCtx()
	defer cancel()
	rec, _, err := s.vms.Get(ctx, m.id)
	if err != nil {
		accept(err)
		return
	}
	if rec.State != stBoot && rec.State != stRunning || m.qemu() == nil {
		accept(refuse(&m.id, "VM %d is %s: only a VM in %s can be powered off", m.id, rec.State, stateList(stBoot, stRunning)))
		return
	}
	accept(nil)
	how := s.stopQEMU(m, hard)
	if _, err := s.transition(ctx, m.id, []schemas.VMState{stBoot, stRunning}, stPoweroff, how, c, func(r *vmRecord) error {
		r.Run.PID = 0
		return nil
	}); err != nil {
		s.log.Error("VM powered off but not recorded POWEROFF", "vm", m.id, "err", err)
	}
}

// resume boots a VM in POWEROFF again.
func (s *Service) resume(m *machine, c cause, accept func(error)) {
	m.op.Lock()
	defer m.op.Unlock()
	ctx, cancel := settleCtx()
	defer cancel()
	rec, err := s.transition(ctx, m.id, []schemas.VMState{stPoweroff}, stBoot, "resume", c, func(r *vmRecord) error {
		if r.Run.Plan == nil {
			return refuse(&m.id, "VM %d has nothing to boot (its PROLOG never finished)", m.id)
		}
		return nil
	})
	var ws *wrongState
	if errors.As(err, &ws) {
		err = refuse(&m.id, "VM %d is %s: only a VM in %s can be resumed", m.id, ws.cur, stPoweroff)
	}
	accept(err)
	if err != nil {
		return
	}
	if err := s.boot(s.life, m, rec, c); err != nil {
		s.fail(m, fmt.Sprintf("BOOT: %v", err), c)
	}
}

// fail ends a VM in FAILED: QEMU killed, locks released, files removed,
// then the state recorded (so whoever sees FAILED sees the images free).
// The caller holds m.op.
func (s *Service) fail(m *machine, reason string, c cause) {
	s.stopQEMU(m, true)
	ctx, cancel := settleCtx()
	defer cancel()
	rec, _, err := s.vms.Get(ctx, m.id)
	if err != nil {
		s.log.Error("VM failed; its record cannot be read", "vm", m.id, "reason", reason, "err", err)
		return
	}
	if _, err := s.epilog(ctx, rec, false); err != nil {
		reason += fmt.Sprintf(" (and cleaning up: %v)", err)
	}
	_, err = s.transition(ctx, m.id, nil, stFailed, reason, c, func(r *vmRecord) error {
		r.Run.PID, r.Run.Plan = 0, nil
		return nil
	})
	if err != nil {
		s.log.Error("VM failed but not recorded FAILED", "vm", m.id, "reason", reason, "err", err)
	}
}
