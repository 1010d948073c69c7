package launcher

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strconv"
	"syscall"
)

// reconcile settles the VMs a previous run left behind. QEMU dies with the
// launcher (PDEATHSIG), so none of them runs any more: a booted VM becomes
// POWEROFF (its disks are intact; resume boots it), a VM half way through
// PROLOG becomes FAILED with its locks released, an EPILOG is finished, a
// PENDING VM is deployed. No lock is left without a VM that holds it.
func (s *Service) reconcile(ctx context.Context) error {
	all, err := s.vms.List(ctx)
	if err != nil {
		return err
	}
	for _, rec := range all {
		m := s.machine(rec.ID)
		switch rec.State {
		case stPending:
			s.spawn(func() { s.deploy(m, cause{}) })
		case stProlog:
			s.spawn(func() {
				m.op.Lock()
				defer m.op.Unlock()
				s.fail(m, "PROLOG: the launcher stopped before it finished", cause{})
			})
		case stBoot, stRunning:
			s.settleBooted(ctx, m, &rec)
		case stPoweroff:
			if _, err := os.Stat(s.vmDir(rec.ID)); err != nil {
				s.spawn(func() {
					m.op.Lock()
					defer m.op.Unlock()
					s.fail(m, fmt.Sprintf("the VM's files are gone (%v): it cannot be resumed", err), cause{})
				})
			}
		case stEpilog:
			s.spawn(func() { s.terminate(m, true, cause{}, func(error) {}) })
		case stFailed:
			if len(rec.Run.Locks) > 0 { // its clean-up was cut short
				s.spawn(func() {
					if _, err := s.epilog(s.life, &rec, false); err != nil {
						s.log.Warn("releasing what a FAILED VM held failed; terminate it to try again", "vm", rec.ID, "err", err)
					}
				})
			} else {
				s.forget(rec.ID)
			}
		case stDone:
			s.forget(rec.ID)
		}
	}
	return nil
}

// settleBooted records POWEROFF for a VM whose QEMU went with the previous
// launcher, killing a QEMU that survived it (it cannot be taken over: its
// QMP connection died with the launcher).
func (s *Service) settleBooted(ctx context.Context, m *machine, rec *vmRecord) {
	reason := "the launcher stopped while the VM ran, and QEMU with it; resume boots it again"
	if pid := rec.Run.PID; pid > 0 && isOurQEMU(pid, s.vmDir(rec.ID)) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		reason = fmt.Sprintf("the launcher restarted: QEMU (pid %d) could not be taken over and was stopped; resume boots the VM again", pid)
	}
	if _, err := os.Stat(s.vmDir(rec.ID)); err != nil {
		s.spawn(func() {
			m.op.Lock()
			defer m.op.Unlock()
			s.fail(m, fmt.Sprintf("the launcher stopped while the VM ran, and its files are gone (%v)", err), cause{})
		})
		return
	}
	if _, err := s.transition(ctx, rec.ID, nil, stPoweroff, reason, cause{}, func(r *vmRecord) error {
		r.Run.PID = 0
		return nil
	}); err != nil {
		s.log.Error("settling a VM left running failed", "vm", rec.ID, "err", err)
	}
}

// isOurQEMU reports whether pid is a live process whose command line names
// the VM's directory (pids are reused).
func isOurQEMU(pid int, dir string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return err == nil && bytes.Contains(b, []byte(dir))
}
