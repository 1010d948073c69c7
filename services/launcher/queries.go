package launcher

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// endpoints are the launcher's queries, on <prefix>.api.launcher.<endpoint>,
// with the requests and replies of the contract (schemas/qry, schemas/rpl).
func (s *Service) endpoints() map[string]bus.QueryHandler {
	return bus.Endpoints(
		bus.Answer(schemas.QryLauncherTemplates, s.queryTemplates),
		bus.Answer(schemas.QryLauncherTemplate, s.queryTemplate),
		bus.Answer(schemas.QryLauncherVMs, s.queryVMs),
		bus.Answer(schemas.QryLauncherVM, s.queryVM),
		bus.Answer(schemas.QryLauncherConsole, s.queryConsole),
		bus.Answer(schemas.QryLauncherFirecracker, s.queryFirecracker),
	)
}

// queryTemplates lists the templates the asker may use.
func (s *Service) queryTemplates(ctx context.Context, _ schemas.LauncherTemplatesRequest) (schemas.LauncherTemplatesReply, error) {
	u, service, err := s.asker(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.templates.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(schemas.LauncherTemplatesReply, 0, len(all))
	for _, t := range all {
		if visible(u, service, templateObject(&t)) {
			out = append(out, t)
		}
	}
	return out, nil
}

// queryTemplate shows a template the asker may use; 403 otherwise.
func (s *Service) queryTemplate(ctx context.Context, r schemas.LauncherTemplateRequest) (schemas.VMTemplate, error) {
	u, service, err := s.asker(ctx)
	if err != nil {
		return schemas.VMTemplate{}, err
	}
	t, err := s.findTemplate(ctx, r.ID, r.Name)
	if err != nil {
		return schemas.VMTemplate{}, err
	}
	if err := mayShow(u, service, templateObject(t)); err != nil {
		return schemas.VMTemplate{}, err
	}
	return *t, nil
}

// queryVMs lists the VMs the asker may use.
func (s *Service) queryVMs(ctx context.Context, r schemas.LauncherVMsRequest) (schemas.LauncherVMsReply, error) {
	u, service, err := s.asker(ctx)
	if err != nil {
		return nil, err
	}
	all, err := s.vms.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make(schemas.LauncherVMsReply, 0, len(all))
	for _, rec := range all {
		if (r.State == "" || rec.State == r.State) && visible(u, service, vmObject(&rec.VM)) {
			out = append(out, public(&rec))
		}
	}
	return out, nil
}

// queriedVM reads the VM a query names; one that does not exist is
// NotFound.
func (s *Service) queriedVM(ctx context.Context, id int64) (*vmRecord, error) {
	rec, _, err := s.vms.Get(ctx, id)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, bus.NotFound(fmt.Errorf("VM %d does not exist", id))
	}
	return rec, err
}

// queryVM shows a VM the asker may use; 403 otherwise.
func (s *Service) queryVM(ctx context.Context, r schemas.LauncherVMRequest) (schemas.VM, error) {
	u, service, err := s.asker(ctx)
	if err != nil {
		return schemas.VM{}, err
	}
	rec, err := s.queriedVM(ctx, r.ID)
	if err != nil {
		return schemas.VM{}, err
	}
	if err := mayShow(u, service, vmObject(&rec.VM)); err != nil {
		return schemas.VM{}, err
	}
	return public(rec), nil
}

// public is the VM as queries show it: disks always a list.
func public(rec *vmRecord) schemas.VM {
	vm := rec.VM
	if vm.Disks == nil {
		vm.Disks = []schemas.VMDisk{}
	}
	return vm
}

func (s *Service) queryConsole(ctx context.Context, r schemas.LauncherConsoleRequest) (schemas.LauncherConsoleReply, error) {
	if r.Offset < 0 {
		return schemas.LauncherConsoleReply{}, bus.Invalid(fmt.Errorf("offset %d is negative", r.Offset))
	}
	u, service, err := s.asker(ctx)
	if err != nil {
		return schemas.LauncherConsoleReply{}, err
	}
	rec, err := s.queriedVM(ctx, r.ID)
	if err != nil {
		return schemas.LauncherConsoleReply{}, err
	}
	if err := mayShow(u, service, vmObject(&rec.VM)); err != nil {
		return schemas.LauncherConsoleReply{}, err
	}
	text, size, err := readConsole(s.consoleLog(r.ID), r.Offset, DefaultConsoleChunk)
	if err != nil {
		return schemas.LauncherConsoleReply{}, fmt.Errorf("VM %d: read the console: %w", r.ID, err)
	}
	return schemas.LauncherConsoleReply{Text: text, Size: size, Next: r.Offset + int64(len(text))}, nil
}
