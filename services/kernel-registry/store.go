package kernelregistry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/schemas"
)

// errNoKernel: no record for that ID or name.
var errNoKernel = errors.New("no such kernel")

// putKernel records k under its image ID.
func (s *Service) putKernel(ctx context.Context, k schemas.Kernel) error {
	b, err := json.Marshal(k)
	if err != nil {
		return err
	}
	if _, err := s.kernels.Put(ctx, strconv.FormatInt(k.ID, 10), b); err != nil {
		return &retryable{fmt.Errorf("record kernel %d: %w", k.ID, err)}
	}
	return nil
}

// getKernel reads the record of image id.
func (s *Service) getKernel(ctx context.Context, id int64) (schemas.Kernel, error) {
	var k schemas.Kernel
	e, err := s.kernels.Get(ctx, strconv.FormatInt(id, 10))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return k, fmt.Errorf("%w: kernel %d", errNoKernel, id)
	}
	if err != nil {
		return k, err
	}
	return k, json.Unmarshal(e.Value(), &k)
}

// listKernels returns every record in ID order.
func (s *Service) listKernels(ctx context.Context) ([]schemas.Kernel, error) {
	keys, err := s.kernels.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []schemas.Kernel{}
	for key := range keys.Keys() {
		id, err := strconv.ParseInt(key, 10, 64)
		if err != nil {
			continue
		}
		k, err := s.getKernel(ctx, id)
		if errors.Is(err, errNoKernel) {
			continue // deleted meanwhile
		}
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	slices.SortFunc(out, func(a, b schemas.Kernel) int { return int(a.ID - b.ID) })
	return out, nil
}

// deleteKernel forgets a record (a failed add's).
func (s *Service) deleteKernel(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.kernels.Delete(ctx, strconv.FormatInt(id, 10)); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		s.log.Warn("kernel-registry: forget kernel", "id", id, "err", err)
	}
}
