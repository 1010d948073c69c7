// Package s3market is Slipway's private S3 marketplace (OpenNebula's
// MARKET_MAD s3): a Market publishes apps into a bucket below a prefix, in
// package published's layout, and a Lister reads them back through S3.
// When the bucket is readable anonymously, httpmarket's Lister reads the
// same marketplace over plain HTTP at <endpoint>/<bucket>/<prefix>.
//
// The index is one object updated with conditional writes (If-Match on
// the ETag read, If-None-Match: * when there is none yet), retried on a
// conflict, so concurrent publishers never lose each other's entries. A
// publish first claims its name by creating the app's metadata object with
// If-None-Match: *, so two publishers of one name cannot overwrite each
// other's blob.
package s3market

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/services/market-lxc/published"
)

// DefaultTotalMB is the TOTAL_MB reported when none is configured (1 TiB):
// a bucket has no size of its own.
const DefaultTotalMB = 1 << 20

// indexAttempts bounds the conditional writes of one index update.
const indexAttempts = 60

// Market publishes into, deletes from and monitors one S3 marketplace.
type Market struct {
	*Lister
	totalMB int64
}

// New is the marketplace in bucket below prefix ("" or "a/b/", see
// CheckPrefix), which the service derives (never a message). totalMB is
// TOTAL_MB, 0 for DefaultTotalMB. The bucket must exist.
func New(store *blob.Store, bucket, prefix string, totalMB int64) (*Market, error) {
	l, err := NewLister(store, bucket, prefix)
	if err != nil {
		return nil, err
	}
	if totalMB < 0 {
		return nil, fmt.Errorf("TOTAL_MB %d is negative", totalMB)
	}
	if totalMB == 0 {
		totalMB = DefaultTotalMB
	}
	return &Market{Lister: l, totalMB: totalMB}, nil
}

// Publish stores app a with the blob read from r. a.SHA256 and a.Size are
// the blob's expected digest and length: the upload streams (blob.Put)
// and is refused, storing nothing, when the data differs. A name already
// published (or being published) is published.ErrExists. It returns the
// app as published.
func (m *Market) Publish(ctx context.Context, a published.App, r io.Reader) (published.App, error) {
	return m.publish(ctx, a, func(a published.App) error { return m.upload(ctx, a, r) })
}

// PublishCopy stores app a with the object srcBucket/srcKey of the same
// store as its blob (a catalog image): the bytes are copied inside the
// object store (blob.Store.Copy), then read back once to check a.Size and
// a.SHA256 before the app is listed. A mismatch publishes nothing.
func (m *Market) PublishCopy(ctx context.Context, a published.App, srcBucket, srcKey string) (published.App, error) {
	return m.publish(ctx, a, func(a published.App) error { return m.copyIn(ctx, a, srcBucket, srcKey) })
}

// publish claims a's name, stores its blob with put and adds it to the
// index; on failure it removes what it wrote.
func (m *Market) publish(ctx context.Context, a published.App, put func(published.App) error) (published.App, error) {
	a, err := published.Prepare(a, time.Now())
	if err != nil {
		return published.App{}, err
	}
	ix, _, err := m.readIndex(ctx)
	if err != nil {
		return published.App{}, err
	}
	if _, ok := ix.Find(a.Name); ok {
		return published.App{}, fmt.Errorf("app %s: %w", a.Name, published.ErrExists)
	}
	if err := m.claim(ctx, a); err != nil {
		return published.App{}, err
	}
	if err := put(a); err != nil {
		return published.App{}, m.undo(ctx, a.Name, err)
	}
	err = m.updateIndex(ctx, func(ix *published.Index) error { return ix.Add(a) })
	if err != nil {
		return published.App{}, m.undo(ctx, a.Name, err)
	}
	return a, nil
}

// claim creates the app's metadata object only if there is none.
func (m *Market) claim(ctx context.Context, a published.App) error {
	meta, err := published.EncodeMeta(a)
	if err != nil {
		return err
	}
	opts := jsonPut()
	opts.SetMatchETagExcept("*")
	_, err = m.client().PutObject(ctx, m.bucket, m.key(published.MetaPath(a.Name)), bytes.NewReader(meta), int64(len(meta)), opts)
	if isConflict(err) {
		return fmt.Errorf("app %s: %w (its metadata object exists: another publish is under way, or one was interrupted; deleting the app clears it)", a.Name, published.ErrExists)
	}
	if err != nil {
		return fmt.Errorf("app %s: write metadata: %w", a.Name, err)
	}
	return nil
}

// upload streams the blob; blob.Put checks its size and SHA-256 before the
// object exists. Put reads exactly a.Size bytes, so a longer stream is
// refused here (and the stored object removed by undo).
func (m *Market) upload(ctx context.Context, a published.App, r io.Reader) error {
	_, err := m.store.Put(ctx, m.bucket, m.key(a.Blob), r, a.Size,
		blob.ExpectSHA256(a.SHA256), blob.ContentType("application/octet-stream"))
	if err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	if n, _ := io.ReadFull(r, make([]byte, 1)); n > 0 {
		return fmt.Errorf("app %s: the blob is longer than the %d bytes expected", a.Name, a.Size)
	}
	return nil
}

// copyIn copies the blob server side and verifies the copy.
func (m *Market) copyIn(ctx context.Context, a published.App, srcBucket, srcKey string) error {
	key := m.key(a.Blob)
	if _, err := m.store.Copy(ctx, srcBucket, srcKey, m.bucket, key); err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	sum, n, err := m.store.SHA256(ctx, m.bucket, key)
	switch {
	case err != nil:
		return fmt.Errorf("app %s: verify copy: %w", a.Name, err)
	case n != a.Size:
		return fmt.Errorf("app %s: %w: %s has %d bytes, %d were expected", a.Name, published.ErrBlobMismatch, blob.URL(srcBucket, srcKey), n, a.Size)
	case sum != a.SHA256:
		return fmt.Errorf("app %s: %w: SHA-256 mismatch: expected %s, got %s (%s)", a.Name, published.ErrBlobMismatch, a.SHA256, sum, blob.URL(srcBucket, srcKey))
	}
	return nil
}

// undo removes what a failed publish of name wrote and returns err.
func (m *Market) undo(ctx context.Context, name string, err error) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	if derr := m.store.DeletePrefix(ctx, m.bucket, m.key(published.AppDir(name))); derr != nil {
		return fmt.Errorf("%w (and removing what was written: %v)", err, derr)
	}
	return err
}

// Delete removes app name: its index entry first, so listers stop seeing
// it, then its objects. An app that is not there is not an error.
func (m *Market) Delete(ctx context.Context, name string) error {
	if err := published.ValidateName(name); err != nil {
		return err
	}
	err := m.updateIndex(ctx, func(ix *published.Index) error {
		if !ix.Remove(name) {
			return errUnchanged
		}
		return nil
	})
	if err != nil && !errors.Is(err, errUnchanged) {
		return err
	}
	return m.store.DeletePrefix(ctx, m.bucket, m.key(published.AppDir(name)))
}

// Monitor reports USED_MB from the sizes of the objects below the prefix,
// TOTAL_MB from the configured quota and FREE_MB as the difference.
func (m *Market) Monitor(ctx context.Context) (published.Usage, error) {
	var used int64
	for o := range m.client().ListObjects(ctx, m.bucket, minio.ListObjectsOptions{Prefix: m.prefix, Recursive: true}) {
		if o.Err != nil {
			return published.Usage{}, fmt.Errorf("monitor %s: %w", blob.URL(m.bucket, m.prefix), o.Err)
		}
		used += o.Size
	}
	return published.QuotaUsage(used, m.totalMB), nil
}

// indexConflicts counts conditional index writes refused because another
// writer came first (the tests show the contention they create).
var indexConflicts atomic.Int64

// errUnchanged stops an index update that has nothing to write.
var errUnchanged = errors.New("index unchanged")

// updateIndex applies change to the index and writes it only if nobody
// wrote it since it was read, retrying with a fresh read on a conflict.
func (m *Market) updateIndex(ctx context.Context, change func(*published.Index) error) error {
	key := m.key(published.IndexFile)
	for attempt := 1; ; attempt++ {
		ix, etag, err := m.readIndex(ctx)
		if err != nil {
			return err
		}
		if err := change(ix); err != nil {
			return err
		}
		data, err := ix.Encode()
		if err != nil {
			return err
		}
		opts := jsonPut()
		if etag == "" {
			opts.SetMatchETagExcept("*")
		} else {
			opts.SetMatchETag(etag)
		}
		_, err = m.client().PutObject(ctx, m.bucket, key, bytes.NewReader(data), int64(len(data)), opts)
		if err == nil {
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("write %s: %w", blob.URL(m.bucket, key), err)
		}
		indexConflicts.Add(1)
		if attempt == indexAttempts {
			return fmt.Errorf("write %s: still conflicting after %d attempts: %w", blob.URL(m.bucket, key), attempt, err)
		}
		// Someone else wrote the index: back off a random while so
		// that racing writers spread out, then read it again.
		select {
		case <-time.After(time.Duration(5+rand.IntN(20*min(attempt, 10))) * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// isConflict tells a conditional write refused because the object changed
// (412 Precondition Failed, or the 409 S3 gives a write racing another).
func isConflict(err error) bool {
	er := minio.ToErrorResponse(err)
	return er.StatusCode == http.StatusPreconditionFailed || er.StatusCode == http.StatusConflict ||
		er.Code == "PreconditionFailed" || er.Code == "ConditionalRequestConflict"
}

func jsonPut() minio.PutObjectOptions {
	return minio.PutObjectOptions{ContentType: "application/json"}
}

// CheckPrefix checks a marketplace prefix: "" (the bucket's root) or
// segments that each pass published.ValidateName, each followed by '/'.
func CheckPrefix(prefix string) error {
	if prefix == "" {
		return nil
	}
	if !strings.HasSuffix(prefix, "/") {
		return fmt.Errorf("marketplace prefix %q must end with '/'", prefix)
	}
	for seg := range strings.SplitSeq(strings.TrimSuffix(prefix, "/"), "/") {
		if err := published.ValidateName(seg); err != nil {
			return fmt.Errorf("marketplace prefix %q: %w", prefix, err)
		}
	}
	return nil
}
