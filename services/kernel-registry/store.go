package kernelregistry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
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

// AddedTTL is how long the registry remembers which kernel an add command
// recorded, so that a redelivered add announces it again instead of
// adding it twice (the catalog's dedup TTL).
const AddedTTL = 24 * time.Hour

// addedKey is the KV key of a command: a digest of its ce-id, which is
// whatever the sender chose.
func addedKey(ceID string) string {
	sum := sha256.Sum256([]byte(ceID))
	return hex.EncodeToString(sum[:])
}

// addedBefore returns the kernel an earlier delivery of the command with
// ce-id ceID recorded, if any.
func (s *Service) addedBefore(ctx context.Context, ceID string) (schemas.Kernel, bool, error) {
	e, err := s.added.Get(ctx, addedKey(ceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return schemas.Kernel{}, false, nil
	}
	if err != nil {
		return schemas.Kernel{}, false, &retryable{fmt.Errorf("read the adds done: %w", err)}
	}
	id, err := strconv.ParseInt(string(e.Value()), 10, 64)
	if err != nil {
		return schemas.Kernel{}, false, fmt.Errorf("the adds done: entry %q: %w", e.Value(), err)
	}
	k, err := s.getKernel(ctx, id)
	if errors.Is(err, errNoKernel) {
		return schemas.Kernel{}, false, nil // deleted since: add it anew
	}
	if err != nil {
		return schemas.Kernel{}, false, &retryable{err}
	}
	return k, true, nil
}

// markAdded remembers that the command with ce-id ceID recorded kernel id.
func (s *Service) markAdded(ctx context.Context, ceID string, id int64) error {
	if _, err := s.added.Put(ctx, addedKey(ceID), []byte(strconv.FormatInt(id, 10))); err != nil {
		return &retryable{fmt.Errorf("remember the add: %w", err)}
	}
	return nil
}
