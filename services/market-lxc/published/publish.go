package published

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"time"
)

// Prepare completes what a publisher is given before it writes anything:
// the derived blob path and the creation time (now, unless set), then
// checks every field. a.SHA256 and a.Size are what the caller expects of
// the blob: the publisher verifies the data against them (Counter).
func Prepare(a App, now time.Time) (App, error) {
	if err := ValidateName(a.Name); err != nil {
		return App{}, err
	}
	if err := ValidateFormat(a.Format); err != nil {
		return App{}, fmt.Errorf("app %s: %w", a.Name, err)
	}
	a.Blob = BlobPath(a.Name, a.Format)
	if a.Created.IsZero() {
		a.Created = now.UTC().Truncate(time.Second)
	}
	if err := a.Validate(); err != nil {
		return App{}, err
	}
	return a, nil
}

// Counter reads a blob being published, hashing and counting it on the
// way, and stops when ctx is cancelled. Check tells whether what was read
// is the app's blob.
type Counter struct {
	ctx  context.Context
	r    io.Reader
	hash hash.Hash
	n    int64
}

// NewCounter wraps r.
func NewCounter(ctx context.Context, r io.Reader) *Counter {
	return &Counter{ctx: ctx, r: r, hash: sha256.New()}
}

func (c *Counter) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	n, err := c.r.Read(p)
	c.hash.Write(p[:n])
	c.n += int64(n)
	return n, err
}

// ErrBlobMismatch is wrapped by the errors of a blob whose size or
// SHA-256 is not what the app records: reading it again gives the same
// bytes, so a publish that meets one is refused, not retried.
var ErrBlobMismatch = errors.New("the blob is not the one recorded")

// Check compares the bytes read with a.Size and a.SHA256.
func (c *Counter) Check(a App) error {
	if c.n != a.Size {
		return fmt.Errorf("app %s: %w: it has %d bytes, %d were expected", a.Name, ErrBlobMismatch, c.n, a.Size)
	}
	if sum := hex.EncodeToString(c.hash.Sum(nil)); sum != a.SHA256 {
		return fmt.Errorf("app %s: %w: SHA-256 mismatch: expected %s, got %s (%d bytes)", a.Name, ErrBlobMismatch, a.SHA256, sum, c.n)
	}
	return nil
}

// Usage is a marketplace's monitoring, in MiB as OpenNebula reports it.
type Usage struct {
	UsedMB, FreeMB, TotalMB int64
}

// Attributes is u as OpenNebula's monitor output.
func (u Usage) Attributes() string {
	return fmt.Sprintf("USED_MB=%d\nFREE_MB=%d\nTOTAL_MB=%d\n", u.UsedMB, u.FreeMB, u.TotalMB)
}

// QuotaUsage is the usage of usedBytes against a configured TOTAL_MB:
// used rounded up to whole MiB, free never below 0.
func QuotaUsage(usedBytes, totalMB int64) Usage {
	used := (usedBytes + 1<<20 - 1) >> 20
	return Usage{UsedMB: used, FreeMB: max(totalMB-used, 0), TotalMB: totalMB}
}
