// Package httpmarket is Slipway's private HTTP marketplace (OpenNebula's
// MARKET_MAD http): a Publisher writes apps into a local directory
// (PUBLIC_DIR) that a web server serves at BASE_URL, and a Lister reads
// them back over HTTP from another Slipway. The layout and documents are
// package published's.
//
// Writes are atomic: the blob streams into a temporary file below
// PUBLIC_DIR/.slipway/ and is renamed into place, documents are written
// to a temporary file and renamed, and the index is rewritten under an
// flock on PUBLIC_DIR/.slipway/lock so that concurrent publishers, in one
// process or several, never lose each other's entries.
package httpmarket

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/slipway/slipway/services/market-lxc/published"
)

// stateDir holds the lock and the blobs being received, inside PUBLIC_DIR
// so that the final rename stays on one file system.
const stateDir = ".slipway"

// Publisher writes apps into a PUBLIC_DIR.
type Publisher struct {
	dir     string
	totalMB int64
}

// NewPublisher publishes into dir, which must exist. totalMB is the
// marketplace's TOTAL_MB: 0 reports the file system's own sizes.
func NewPublisher(dir string, totalMB int64) (*Publisher, error) {
	if totalMB < 0 {
		return nil, fmt.Errorf("TOTAL_MB %d is negative", totalMB)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("PUBLIC_DIR %q: %w", dir, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("PUBLIC_DIR: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("PUBLIC_DIR %s is not a directory", abs)
	}
	if err := os.MkdirAll(filepath.Join(abs, stateDir), 0o700); err != nil {
		return nil, fmt.Errorf("PUBLIC_DIR: %w", err)
	}
	return &Publisher{dir: abs, totalMB: totalMB}, nil
}

// Dir is the PUBLIC_DIR.
func (p *Publisher) Dir() string { return p.dir }

// path is the file of rel, a path package published derived.
func (p *Publisher) path(rel string) string { return filepath.Join(p.dir, filepath.FromSlash(rel)) }

// Publish stores app a with the blob read from r. a.SHA256 and a.Size are
// the blob's expected digest and length, checked while the blob streams
// to disk; a mismatch, a name already published or any failure leaves
// nothing published. It returns the app as published (blob path and
// creation time filled in).
func (p *Publisher) Publish(ctx context.Context, a published.App, r io.Reader) (published.App, error) {
	a, err := published.Prepare(a, time.Now())
	if err != nil {
		return published.App{}, err
	}
	// Fail before a long copy when the name is taken; checked again
	// under the lock.
	if ix, err := p.readIndex(); err != nil {
		return published.App{}, err
	} else if _, ok := ix.Find(a.Name); ok {
		return published.App{}, fmt.Errorf("app %s: %w", a.Name, published.ErrExists)
	}
	tmp, err := p.receive(ctx, a, r)
	if err != nil {
		return published.App{}, err
	}
	defer os.Remove(tmp) // gone after the rename
	err = p.locked(func() error { return p.commit(a, tmp) })
	if err != nil {
		return published.App{}, err
	}
	return a, nil
}

// receive streams the blob into a temporary file and checks it.
func (p *Publisher) receive(ctx context.Context, a published.App, r io.Reader) (string, error) {
	f, err := os.CreateTemp(filepath.Join(p.dir, stateDir), "incoming-"+a.Name+"-*")
	if err != nil {
		return "", fmt.Errorf("app %s: %w", a.Name, err)
	}
	ok := false
	defer func() {
		if !ok {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	c := published.NewCounter(ctx, r)
	if _, err := io.Copy(f, c); err != nil {
		return "", fmt.Errorf("app %s: receive blob: %w", a.Name, err)
	}
	if err := c.Check(a); err != nil {
		return "", err
	}
	if err := closeFile(f, 0o644); err != nil {
		return "", fmt.Errorf("app %s: %w", a.Name, err)
	}
	ok = true
	return f.Name(), nil
}

// commit moves a received blob into place and writes the documents; it
// runs under the lock. On failure the app's directory is removed.
func (p *Publisher) commit(a published.App, blobTmp string) (err error) {
	ix, err := p.readIndex()
	if err != nil {
		return err
	}
	if err := ix.Add(a); err != nil {
		return err
	}
	appDir := p.path(published.AppDir(a.Name))
	// Not in the index: whatever is there is left from an interrupted
	// publish or delete.
	if err := os.RemoveAll(appDir); err != nil {
		return fmt.Errorf("app %s: clear old files: %w", a.Name, err)
	}
	if err := os.MkdirAll(appDir, 0o755); err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(appDir)
		}
	}()
	if err := os.Rename(blobTmp, p.path(a.Blob)); err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	meta, err := published.EncodeMeta(a)
	if err != nil {
		return err
	}
	if err := p.writeAtomic(published.MetaPath(a.Name), meta); err != nil {
		return fmt.Errorf("app %s: %w", a.Name, err)
	}
	return p.writeIndex(ix)
}

// Delete removes app name: its index entry first, so listers stop seeing
// it, then its files. An app that is not there is not an error.
func (p *Publisher) Delete(ctx context.Context, name string) error {
	if err := published.ValidateName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.locked(func() error {
		ix, err := p.readIndex()
		if err != nil {
			return err
		}
		if ix.Remove(name) {
			if err := p.writeIndex(ix); err != nil {
				return err
			}
		}
		if err := os.RemoveAll(p.path(published.AppDir(name))); err != nil {
			return fmt.Errorf("app %s: %w", name, err)
		}
		return nil
	})
}

// Index reads the index as published (an empty one before the first
// publish).
func (p *Publisher) Index() (*published.Index, error) { return p.readIndex() }

func (p *Publisher) readIndex() (*published.Index, error) {
	f, err := os.Open(p.path(published.IndexFile))
	if errors.Is(err, fs.ErrNotExist) {
		return published.NewIndex(), nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	ix, err := published.DecodeIndex(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", f.Name(), err)
	}
	return ix, nil
}

func (p *Publisher) writeIndex(ix *published.Index) error {
	b, err := ix.Encode()
	if err != nil {
		return err
	}
	return p.writeAtomic(published.IndexFile, b)
}

// writeAtomic replaces the file at rel with data: a reader (the web
// server) sees the old file or the new one, never part of one.
func (p *Publisher) writeAtomic(rel string, data []byte) error {
	final := p.path(rel)
	f, err := os.CreateTemp(filepath.Dir(final), "."+filepath.Base(final)+"-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := closeFile(f, 0o644); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), final); err != nil {
		return err
	}
	return syncDir(filepath.Dir(final))
}

// closeFile makes f world-readable (the web server reads it), flushes it
// to disk and closes it.
func closeFile(f *os.File, mode os.FileMode) error {
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// locked runs fn holding the PUBLIC_DIR's lock. flock locks belong to an
// open file, so goroutines of one process exclude each other as separate
// processes do.
func (p *Publisher) locked(fn func() error) error {
	f, err := os.OpenFile(filepath.Join(p.dir, stateDir, "lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("marketplace lock: %w", err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("marketplace lock %s: %w", f.Name(), err)
	}
	defer syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return fn()
}
