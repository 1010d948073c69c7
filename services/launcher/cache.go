package launcher

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/schemas"
)

// blobCache keeps image blobs fetched from S3 as read-only local files
// named after the image ID and the blob's SHA-256, so VMs share one copy
// and a changed image (a persistent image written back) gets a new one.
// Overlays point into it, so files stay while the launcher runs; deleting
// the cache directory while no VM runs is safe.
type blobCache struct {
	dir   string
	blobs *blob.Store

	mu    sync.Mutex
	locks map[string]*sync.Mutex // one per file being fetched
}

func newBlobCache(dir string, blobs *blob.Store) *blobCache {
	return &blobCache{dir: dir, blobs: blobs, locks: map[string]*sync.Mutex{}}
}

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]`)

// imageKey names an image's blob in the cache. The record comes from a
// reply on the bus, so what becomes a file name is checked first: the
// SHA-256 is 64 hex digits and the format one Slipway knows.
func imageKey(img *schemas.Image) (string, error) {
	ver := img.SHA256
	switch {
	case img.ID < 0:
		return "", fmt.Errorf("image ID %d is not an image ID", img.ID)
	case ver == "":
		ver = "t" + unsafeName.ReplaceAllString(img.UpdatedAt, "_")
	case !sha256Hex.MatchString(ver):
		return "", fmt.Errorf("image %d: SHA-256 %q is not 64 lower-case hex digits", img.ID, ver)
	}
	ext := string(img.Format)
	if ext == "" {
		ext = "bin"
	} else if !slices.Contains(schemas.DiskFormatValues(), img.Format) {
		return "", fmt.Errorf("image %d: format %q is not a disk format", img.ID, ext)
	}
	return "image-" + strconv.FormatInt(img.ID, 10) + "-" + ver + "." + ext, nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

// image returns the local path of an image's blob, fetching it first when
// needed; the blob's SHA-256 must be the catalog's.
func (c *blobCache) image(ctx context.Context, img *schemas.Image) (string, error) {
	if img.Source == "" {
		return "", fmt.Errorf("image %d (%s) has no stored blob", img.ID, img.Name)
	}
	key, err := imageKey(img)
	if err != nil {
		return "", err
	}
	return c.fetch(ctx, key, img.Source, img.SHA256)
}

// url returns the local path of the object at u under key, fetching it
// when needed; wantSHA is checked when not empty.
func (c *blobCache) url(ctx context.Context, key, u, wantSHA string) (string, error) {
	return c.fetch(ctx, unsafeName.ReplaceAllString(key, "_"), u, wantSHA)
}

func (c *blobCache) keyLock(key string) *sync.Mutex {
	c.mu.Lock()
	defer c.mu.Unlock()
	l, ok := c.locks[key]
	if !ok {
		l = &sync.Mutex{}
		c.locks[key] = l
	}
	return l
}

func (c *blobCache) fetch(ctx context.Context, key, u, wantSHA string) (string, error) {
	path := filepath.Join(c.dir, key)
	l := c.keyLock(key)
	l.Lock()
	defer l.Unlock()
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
		return path, nil
	}
	bucket, objKey, err := blob.ParseURL(u)
	if err != nil {
		return "", err
	}
	rc, _, err := c.blobs.Get(ctx, bucket, objKey)
	if err != nil {
		return "", fmt.Errorf("fetch %s: %w", u, err)
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(c.dir, ".part-*")
	if err != nil {
		return "", err
	}
	defer os.Remove(tmp.Name()) // after the rename, removes nothing
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(tmp, h), rc); err != nil {
		tmp.Close()
		return "", fmt.Errorf("fetch %s: %w", u, err)
	}
	if err := tmp.Close(); err != nil {
		return "", err
	}
	if got := hex.EncodeToString(h.Sum(nil)); wantSHA != "" && got != wantSHA {
		return "", fmt.Errorf("fetch %s: its SHA-256 is %s, the catalog says %s", u, got, wantSHA)
	}
	// Read-only: overlays and VMs share the file and must not change it.
	if err := os.Chmod(tmp.Name(), 0o444); err != nil {
		return "", err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", err
	}
	return path, nil
}
