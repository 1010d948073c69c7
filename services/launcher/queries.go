package launcher

import (
	"context"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// Query endpoints, on <prefix>.api.launcher.<endpoint>.
const (
	QueryTemplates = schemas.QueryLauncherTemplates
	QueryTemplate  = schemas.QueryLauncherTemplate
	QueryVMs       = schemas.QueryLauncherVMs
	QueryVM        = schemas.QueryLauncherVM
	QueryConsole   = schemas.QueryLauncherConsole
)

// TemplateRequest names a template by ID or by name.
type TemplateRequest struct {
	ID   *int64 `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// VMRequest names a VM.
type VMRequest struct {
	ID int64 `json:"id"`
}

// VMsRequest filters the vms query; empty State lists every VM.
type VMsRequest struct {
	State schemas.VMState `json:"state,omitempty"`
}

// ConsoleRequest asks for a VM's serial console from Offset (bytes).
type ConsoleRequest struct {
	ID     int64 `json:"id"`
	Offset int64 `json:"offset,omitempty"`
}

// Console is a piece of a VM's serial console: Text from the asked offset
// (at most 256 KiB), Size the whole log's, Next the offset to ask for
// next.
type Console struct {
	Text string `json:"text"`
	Size int64  `json:"size"`
	Next int64  `json:"next"`
}

func (s *Service) endpoints() map[string]bus.QueryHandler {
	return map[string]bus.QueryHandler{
		QueryTemplates:   s.queryTemplates,
		QueryTemplate:    s.queryTemplate,
		QueryVMs:         s.queryVMs,
		QueryVM:          s.queryVM,
		QueryConsole:     s.queryConsole,
		QueryFirecracker: s.queryFirecracker,
	}
}

func (s *Service) queryTemplates(ctx context.Context, _ []byte) (any, error) {
	return s.templates.List(ctx)
}

func (s *Service) queryTemplate(ctx context.Context, req []byte) (any, error) {
	var r TemplateRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	return s.findTemplate(ctx, r.ID, r.Name)
}

func (s *Service) queryVMs(ctx context.Context, req []byte) (any, error) {
	var r VMsRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	all, err := s.vms.List(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]schemas.VM, 0, len(all))
	for _, rec := range all {
		if r.State == "" || rec.State == r.State {
			out = append(out, public(&rec))
		}
	}
	return out, nil
}

func (s *Service) getVM(ctx context.Context, req []byte) (*vmRecord, error) {
	var r VMRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	rec, _, err := s.vms.Get(ctx, r.ID)
	if errors.Is(err, kvstore.ErrNotFound) {
		return nil, bus.NotFound(fmt.Errorf("VM %d does not exist", r.ID))
	}
	return rec, err
}

func (s *Service) queryVM(ctx context.Context, req []byte) (any, error) {
	rec, err := s.getVM(ctx, req)
	if err != nil {
		return nil, err
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

func (s *Service) queryConsole(ctx context.Context, req []byte) (any, error) {
	var r ConsoleRequest
	if err := bus.DecodeQuery(req, &r); err != nil {
		return nil, err
	}
	if r.Offset < 0 {
		return nil, bus.Invalid(fmt.Errorf("offset %d is negative", r.Offset))
	}
	if _, _, err := s.vms.Get(ctx, r.ID); errors.Is(err, kvstore.ErrNotFound) {
		return nil, bus.NotFound(fmt.Errorf("VM %d does not exist", r.ID))
	} else if err != nil {
		return nil, err
	}
	text, size, err := readConsole(s.consoleLog(r.ID), r.Offset, DefaultConsoleChunk)
	if err != nil {
		return nil, fmt.Errorf("VM %d: read the console: %w", r.ID, err)
	}
	return Console{Text: text, Size: size, Next: r.Offset + int64(len(text))}, nil
}
