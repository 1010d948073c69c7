package launcher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// vmRecord is what the vms bucket keeps: the public VM record and the
// launcher's own bookkeeping, which queries leave out.
type vmRecord struct {
	schemas.VM
	Run vmRun `json:"run"`
}

// vmRun is the bookkeeping that lets a VM be ended cleanly, even by a
// launcher started after a crash.
type vmRun struct {
	// Seq counts the VM's transitions; it numbers their events.
	Seq int64 `json:"seq"`
	// Locks are the images this VM holds with image-use. An image is added
	// before the call, so a crash in between still releases it.
	Locks []int64 `json:"locks,omitempty"`
	// PID is QEMU's while the VM is BOOT or RUNNING.
	PID int `json:"pid,omitempty"`
	// Plan is what PROLOG prepared; resume boots it again.
	Plan *bootPlan `json:"plan,omitempty"`
}

// bootPlan is a prepared VM: QEMU's configuration and where each disk's
// data came from.
type bootPlan struct {
	QEMU   qemu.Config     `json:"qemu"`
	Disks  []planDisk      `json:"disks"`
	Kernel *schemas.VMFile `json:"kernel,omitempty"`
	Initrd *schemas.VMFile `json:"initrd,omitempty"`
}

// planDisk says how one DISK was materialised in the VM directory.
type planDisk struct {
	DiskID     int64  `json:"disk_id"`
	ImageID    int64  `json:"image_id"`
	QEMUID     string `json:"qemu_id"`          // qemu.Disk.ID: the QMP node name
	Format     string `json:"format"`           // the image's format
	Base       string `json:"base"`             // the cached blob
	Path       string `json:"path"`             // what QEMU opens: an overlay, a private copy, or Base
	Persistent bool   `json:"persistent"`       // Path is a private copy written back at EPILOG
	Overlay    bool   `json:"overlay"`          // Path is a qcow2 overlay over Base
	Secret     string `json:"secret,omitempty"` // the LUKS passphrase file
	// Public is the disk as the VM record shows it.
	Public schemas.VMDisk `json:"public"`
}

// machine is the launcher's in-memory handle on one VM. op serialises the
// operations that change the VM's life-cycle state (deploy, terminate,
// poweroff, resume, failure, QEMU's own exit); mu guards the fields.
type machine struct {
	id int64
	op sync.Mutex

	mu         sync.Mutex
	ending     bool               // terminate asked: no new work starts
	cancelAct  context.CancelFunc // ends the PROLOG in progress
	vm         *qemu.VM
	stopVM     context.CancelFunc // ends QEMU's context (kills it)
	expectExit bool               // an operation is stopping QEMU; the exit watcher stays out
}

// machine returns the handle of VM id, making one when needed.
func (s *Service) machine(id int64) *machine {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.machines[id]
	if !ok {
		m = &machine{id: id}
		s.machines[id] = m
	}
	return m
}

// forget drops the handle of a VM that reached DONE.
func (s *Service) forget(id int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.machines, id)
}

// startAct returns the context of a PROLOG; it is already cancelled when
// the VM is being terminated.
func (m *machine) startAct(parent context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ending {
		cancel()
	}
	m.cancelAct = cancel
	return ctx, func() {
		m.mu.Lock()
		m.cancelAct = nil
		m.mu.Unlock()
		cancel()
	}
}

// interrupt marks the VM as ending and stops the PROLOG in progress.
func (m *machine) interrupt() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.ending = true
	if m.cancelAct != nil {
		m.cancelAct()
	}
}

func (m *machine) isEnding() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.ending
}

// qemu returns the running QEMU, if any.
func (m *machine) qemu() *qemu.VM {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vm
}

func (m *machine) setQEMU(vm *qemu.VM, stop context.CancelFunc) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.vm, m.stopVM, m.expectExit = vm, stop, false
}

// clearQEMU forgets QEMU (which has exited or is being stopped) and ends
// its context.
func (m *machine) clearQEMU() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopVM != nil {
		m.stopVM()
	}
	m.vm, m.stopVM = nil, nil
}

func (m *machine) setExpectExit() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expectExit = true
}

// owns reports whether vm is still this machine's QEMU and nobody is
// stopping it on purpose.
func (m *machine) owns(vm *qemu.VM) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.vm == vm && !m.expectExit
}

// wrongState is returned by transition when the VM is not in a state the
// change starts from.
type wrongState struct {
	id  int64
	cur schemas.VMState
}

func (e *wrongState) Error() string { return fmt.Sprintf("VM %d is %s", e.id, e.cur) }

// transition moves VM id to state to when it is in one of from (any state
// when from is empty), applies change, and publishes vm-state-changed.
func (s *Service) transition(ctx context.Context, id int64, from []schemas.VMState, to schemas.VMState,
	reason string, c cause, change func(*vmRecord) error) (*vmRecord, error) {
	var prev schemas.VMState
	rec, changed, err := s.vms.Update(ctx, id, func(r *vmRecord) error {
		if len(from) > 0 && !slices.Contains(from, r.State) {
			return &wrongState{id: id, cur: r.State}
		}
		prev = r.State
		if change != nil { // it sees the state the VM leaves
			if err := change(r); err != nil {
				return err
			}
		}
		// The record is what the vm and vms queries answer: its reason fits
		// the VM schema (maxLength) like the event's.
		r.State, r.Reason, r.UpdatedAt = to, truncate(reason), now()
		if to == schemas.VMStateFailed {
			r.Error = schemas.ErrorText(reason)
		}
		r.Run.Seq++
		return nil
	})
	if err != nil || !changed {
		return rec, err
	}
	s.log.Info("VM state changed", "vm", id, "from", prev, "to", to, "reason", reason)
	ev := schemas.LauncherVMStateChanged{ID: id, From: prev, To: to, Reason: truncate(reason)}
	if _, err := s.bus.Event(ctx, schemas.EventLauncherVMStateChanged, idKey(id), ev, c.opts(id, rec.Run.Seq)...); err != nil {
		s.log.Warn("publishing a VM state change failed", "vm", id, "to", to, "err", err)
	}
	return rec, nil
}

func truncate(s string) string {
	if len(s) <= schemas.MaxErrorLen {
		return s
	}
	return schemas.ErrorText(s)
}

// instantiate creates a VM from a template and starts its deployment.
func (s *Service) instantiate(ctx context.Context, m *bus.Msg) error {
	var req schemas.LauncherInstantiate
	if err := decode(m, &req); err != nil {
		return err
	}
	id, done, prev, err := priorCreate(ctx, s, m, s.vms)
	if err != nil {
		return err
	}
	if prev != nil {
		// The VM exists: its deployment started then, or the restart
		// that followed settles it.
		return s.announceCreated(ctx, m, prev)
	}
	t, _, err := s.templates.Get(ctx, req.TemplateID)
	if errors.Is(err, kvstore.ErrNotFound) {
		return missing(nil, "template %d does not exist", req.TemplateID)
	}
	if err != nil {
		return err
	}
	spec, err := s.parseTemplate(t.Template, t.AdminAttributes)
	if err != nil {
		return refuse(nil, "template %d (%s): %v", t.ID, t.Name, err)
	}
	if !done {
		// The ID is recorded against the command before the VM exists,
		// so a redelivery after a crash makes this VM, not another.
		if id, err = s.vms.NextID(ctx); err != nil {
			return err
		}
		if err := s.markProcessed(ctx, m, id); err != nil {
			return err
		}
	}
	name := req.Name
	if name == "" {
		base := spec.Name
		if base == "" {
			base = t.Name
		}
		name = fmt.Sprintf("%s-%d", base, id)
	}
	// A user's VM is theirs, in their primary group, 600: the catalog
	// checks their use of every image it locks (on_behalf_of). A
	// service's has no user.
	_, group, perms, err := s.ownership(ctx, m, "")
	if err != nil {
		return err
	}
	rec := vmRecord{VM: schemas.VM{ID: id, Name: name, User: bus.UserOf(m), Group: group, Permissions: perms,
		State: schemas.VMStatePending, TemplateID: t.ID,
		Template: t.Template, Vcpu: int64(spec.VCPU), MemoryMiB: spec.MemoryMiB, Disks: []schemas.VMDisk{}, CreatedAt: now()}}
	rec.UpdatedAt = rec.CreatedAt
	if _, err := s.vms.Create(ctx, id, &rec); err != nil {
		return err
	}
	if err := s.announceCreated(ctx, m, &rec); err != nil {
		return err
	}
	s.spawn(func() { s.deploy(s.machine(id), causeOf(m)) })
	return nil
}

// announceCreated publishes vm-created and the first state change.
func (s *Service) announceCreated(ctx context.Context, m *bus.Msg, rec *vmRecord) error {
	ev := schemas.LauncherVMCreated{ID: rec.ID, Name: rec.Name, TemplateID: rec.TemplateID}
	if _, err := s.bus.Event(ctx, schemas.EventLauncherVMCreated, idKey(rec.ID), ev, causedBy(m.Envelope, schemas.EventLauncherVMCreated)...); err != nil {
		return err
	}
	st := schemas.LauncherVMStateChanged{ID: rec.ID, To: schemas.VMStatePending}
	_, err := s.bus.Event(ctx, schemas.EventLauncherVMStateChanged, idKey(rec.ID), st, causeOf(m).opts(rec.ID, 0)...)
	return err
}

// spawn runs f as part of the service: Run waits for it.
func (s *Service) spawn(f func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
}

// vmCommand is the common shape of terminate, poweroff and resume: find
// the VM, hand the operation to a goroutine, and answer once it has
// accepted (its first state change made) or refused.
func (s *Service) vmCommand(ctx context.Context, id int64, op func(m *machine, accept func(error))) error {
	if _, _, err := s.vms.Get(ctx, id); errors.Is(err, kvstore.ErrNotFound) {
		return missing(&id, "VM %d does not exist", id)
	} else if err != nil {
		return err
	}
	m := s.machine(id)
	answer := make(chan error, 1)
	var once sync.Once
	accept := func(err error) { once.Do(func() { answer <- err }) }
	s.spawn(func() {
		defer accept(nil)
		op(m, accept)
	})
	select {
	case err := <-answer:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Service) terminateCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.VMAction
	if err := decode(msg, &req); err != nil {
		return err
	}
	return s.vmCommand(ctx, req.ID, func(m *machine, accept func(error)) {
		s.terminate(m, req.Hard, causeOf(msg), accept)
	})
}

func (s *Service) poweroffCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.VMAction
	if err := decode(msg, &req); err != nil {
		return err
	}
	return s.vmCommand(ctx, req.ID, func(m *machine, accept func(error)) {
		s.poweroff(m, req.Hard, causeOf(msg), accept)
	})
}

func (s *Service) resumeCmd(ctx context.Context, msg *bus.Msg) error {
	var req schemas.LauncherResume
	if err := decode(msg, &req); err != nil {
		return err
	}
	return s.vmCommand(ctx, req.ID, func(m *machine, accept func(error)) {
		s.resume(m, causeOf(msg), accept)
	})
}

// stateList names states for messages: "BOOT or RUNNING".
func stateList(states ...schemas.VMState) string {
	parts := make([]string, len(states))
	for i, st := range states {
		parts[i] = string(st)
	}
	if len(parts) <= 1 {
		return strings.Join(parts, "")
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " or " + parts[len(parts)-1]
}
