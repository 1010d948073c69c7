package kernelregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/slipway/slipway/pkg/bus"
)

// queryList answers list: every kernel, in ID order.
func (s *Service) queryList(ctx context.Context, _ []byte) (any, error) {
	return s.kernels.List(ctx)
}

// showRequest names a kernel by its image ID or its name.
type showRequest struct {
	ID   *int64 `json:"id,omitempty"`
	Name string `json:"name,omitempty"`
}

// queryShow answers show {id} or {name}.
func (s *Service) queryShow(ctx context.Context, req []byte) (any, error) {
	var r showRequest
	if err := json.Unmarshal(req, &r); err != nil || (r.ID == nil && r.Name == "") {
		return nil, bus.Invalid(errors.New(`show wants {"id": N} or {"name": "…"}`))
	}
	if r.ID != nil {
		k, err := s.getKernel(ctx, *r.ID)
		if errors.Is(err, errNoKernel) {
			return nil, bus.NotFound(fmt.Errorf("no kernel has image ID %d", *r.ID))
		}
		return k, err
	}
	all, err := s.kernels.List(ctx)
	if err != nil {
		return nil, err
	}
	for _, k := range all {
		if k.Name == r.Name {
			return k, nil
		}
	}
	return nil, bus.NotFound(fmt.Errorf("no kernel is named %q", r.Name))
}
