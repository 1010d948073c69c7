package catalog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/nats-io/nats.go/jetstream"
)

// processed is what the dedup bucket remembers of a command (key = its
// ce-id), so a redelivered command is not acted on twice.
type processed struct {
	// ImageID is the image the command created or acted on (-1: none).
	ImageID int64 `json:"image_id"`
	// SagaID is the workflow a create started.
	SagaID string `json:"saga_id,omitempty"`
	// Done is false while a create is half way: a redelivery resumes it
	// with the same image ID instead of allocating another.
	Done bool `json:"done"`
	// Error is why the command was refused, if it was.
	Error string `json:"error,omitempty"`
}

var validKey = regexp.MustCompile(`^[-/_=.a-zA-Z0-9]{1,200}$`)

// dedupKey is the command's ce-id when it is a valid KV key, else a digest
// of it (ce-id is whatever the sender chose).
func dedupKey(ceID string) string {
	if validKey.MatchString(ceID) && ceID[0] != '.' && ceID[len(ceID)-1] != '.' {
		return ceID
	}
	sum := sha256.Sum256([]byte(ceID))
	return "h-" + hex.EncodeToString(sum[:])
}

func (s *Service) dedupGet(ctx context.Context, ceID string) (*processed, uint64, error) {
	e, err := s.dedup.Get(ctx, dedupKey(ceID))
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("dedup: read command %s: %w", ceID, err)
	}
	var p processed
	if err := json.Unmarshal(e.Value(), &p); err != nil {
		return nil, 0, fmt.Errorf("dedup: decode command %s: %w", ceID, err)
	}
	return &p, e.Revision(), nil
}

// dedupClaim records a half-done create for image id. When the command was
// already claimed (a redelivery racing another replica), it returns the
// claim that won.
func (s *Service) dedupClaim(ctx context.Context, ceID string, p processed) (processed, error) {
	b, _ := json.Marshal(p)
	_, err := s.dedup.Create(ctx, dedupKey(ceID), b)
	if err == nil {
		return p, nil
	}
	if !errors.Is(err, jetstream.ErrKeyExists) {
		return p, fmt.Errorf("dedup: claim command %s: %w", ceID, err)
	}
	won, _, err := s.dedupGet(ctx, ceID)
	if err != nil {
		return p, err
	}
	if won == nil {
		return p, fmt.Errorf("dedup: claim of command %s vanished", ceID)
	}
	return *won, nil
}

// dedupDone records that a command was fully processed.
func (s *Service) dedupDone(ctx context.Context, ceID string, p processed) error {
	p.Done = true
	b, _ := json.Marshal(p)
	if _, err := s.dedup.Put(ctx, dedupKey(ceID), b); err != nil {
		return fmt.Errorf("dedup: record command %s: %w", ceID, err)
	}
	return nil
}
