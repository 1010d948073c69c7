package kernelregistry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/slipway/slipway/pkg/kvstore"
	"github.com/slipway/slipway/schemas"
)

// Kernels are kvstore records (pkg/kvstore) keyed by their image ID.

// errNoKernel: no record for that ID or name.
var errNoKernel = errors.New("no such kernel")

func openKernels(kv jetstream.KeyValue) *kvstore.Store[int64, schemas.Kernel] {
	return kvstore.New[int64](kv, kvstore.Config[schemas.Kernel]{What: "kernel"})
}

// putKernel records k under its image ID.
func (s *Service) putKernel(ctx context.Context, k schemas.Kernel) error {
	if _, err := s.kernels.Put(ctx, k.ID, &k); err != nil {
		return &retryable{fmt.Errorf("record kernel %d: %w", k.ID, err)}
	}
	return nil
}

// getKernel reads the record of image id.
func (s *Service) getKernel(ctx context.Context, id int64) (schemas.Kernel, error) {
	k, _, err := s.kernels.Get(ctx, id)
	if errors.Is(err, kvstore.ErrNotFound) {
		return schemas.Kernel{}, fmt.Errorf("%w: kernel %d", errNoKernel, id)
	}
	if err != nil {
		return schemas.Kernel{}, err
	}
	return *k, nil
}

// deleteKernel forgets a record (a failed add's).
func (s *Service) deleteKernel(id int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.kernels.Delete(ctx, id); err != nil {
		s.log.Warn("kernel-registry: forget kernel", "id", id, "err", err)
	}
}
