package s3market

import (
	"context"
	"fmt"
	"io"

	"github.com/minio/minio-go/v7"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/services/market-lxc/published"
)

// Lister reads an S3 marketplace with the store's credentials.
type Lister struct {
	store          *blob.Store
	bucket, prefix string
}

// NewLister reads the marketplace in bucket below prefix (CheckPrefix).
func NewLister(store *blob.Store, bucket, prefix string) (*Lister, error) {
	if err := CheckPrefix(prefix); err != nil {
		return nil, err
	}
	if bucket == "" {
		return nil, fmt.Errorf("marketplace: no bucket")
	}
	return &Lister{store: store, bucket: bucket, prefix: prefix}, nil
}

// List reads and checks the index and returns every app with the s3://
// URL of its blob. A marketplace nothing was published to yet is empty.
func (l *Lister) List(ctx context.Context) ([]published.Entry, error) {
	ix, _, err := l.readIndex(ctx)
	if err != nil {
		return nil, err
	}
	entries := make([]published.Entry, 0, len(ix.Apps))
	for _, a := range ix.Apps {
		entries = append(entries, published.Entry{App: a, BlobURL: l.BlobURL(a)})
	}
	return entries, nil
}

// BlobURL is the s3:// URL of a's blob; a must be valid (List's are).
func (l *Lister) BlobURL(a published.App) string {
	return blob.URL(l.bucket, l.key(published.BlobPath(a.Name, a.Format)))
}

// Open reads a's blob. The reader fails rather than ending when the bytes
// are not the published size and SHA-256.
func (l *Lister) Open(ctx context.Context, a published.App) (io.ReadCloser, error) {
	if err := a.Validate(); err != nil {
		return nil, err
	}
	rc, _, err := l.store.Get(ctx, l.bucket, l.key(published.BlobPath(a.Name, a.Format)))
	if err != nil {
		return nil, err
	}
	return published.VerifiedReader(ctx, rc, a), nil
}

// readIndex returns the index and the ETag of the object it was read from
// ("" and an empty index when there is none yet), from one GET so that the
// two match.
func (l *Lister) readIndex(ctx context.Context) (*published.Index, string, error) {
	key := l.key(published.IndexFile)
	body, info, _, err := minio.Core{Client: l.client()}.GetObject(ctx, l.bucket, key, minio.GetObjectOptions{})
	if blob.IsNotFound(err) {
		return published.NewIndex(), "", nil
	}
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", blob.URL(l.bucket, key), err)
	}
	defer body.Close()
	ix, err := published.DecodeIndex(body)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", blob.URL(l.bucket, key), err)
	}
	return ix, info.ETag, nil
}

func (l *Lister) client() *minio.Client { return l.store.Client() }

// key is the object key of rel, a path package published derived.
func (l *Lister) key(rel string) string { return l.prefix + rel }
