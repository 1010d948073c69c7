package oci

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// Image is a pulled image whose layers download into a local cache in the
// background, so a caller can work on the first layers while the later
// ones are still on the way.
type Image interface {
	// Layers returns the layers, read from the cache. A layer's
	// Compressed and Uncompressed wait until its download has finished,
	// and return its download error (a *LayerError) if it failed;
	// Uncompressed decompresses on demand and fails at EOF if the content
	// does not match the config's diff_id.
	Layers() ([]v1.Layer, error)
	Config() (*v1.ConfigFile, error)
	// Digest is the image manifest's digest, "sha256:…".
	Digest() string
	// Wait waits for every layer's download and returns the first
	// failure, which stopped the others.
	Wait() error
	// Close stops the downloads still running and waits for them to
	// end, removing their partial files; it returns the first download
	// failure that came before it, if any. Call it (or Wait) before
	// removing the cache directory.
	Close() error
}

// Pull resolves the image pinned by a "repo@sha256:…" reference (an index
// digest picks opts' platform) and returns as soon as its manifest and
// config are known, its layers still downloading in the background (at
// most opts.Parallelism at once, lowest first) into cacheDir: compressed
// blobs named by digest under cacheDir/blobs/sha256/, each verified against
// the manifest's digest and size before it is renamed into place. Layers
// already in the cache are not fetched again. One layer failing, or ctx
// ending, stops the other downloads.
func Pull(ctx context.Context, pinned string, cacheDir string, opts Options) (Image, error) {
	s, err := opts.settings()
	if err != nil {
		return nil, err
	}
	d, err := name.NewDigest(pinned, s.nameOptions()...)
	if err != nil {
		return nil, fmt.Errorf("pull %q: want a pinned reference repo@sha256:…: %w", pinned, err)
	}
	srcs, err := s.sources(d.Context())
	if err != nil {
		return nil, err
	}
	pullers, err := s.pullers(ctx, srcs)
	if err != nil {
		return nil, err
	}
	img, m, cfg, at, err := s.manifest(ctx, d, pullers)
	if err != nil {
		return nil, err
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return nil, fmt.Errorf("%s: config lists %d diff_ids for %d layers", pinned, len(cfg.RootFS.DiffIDs), len(m.Layers))
	}
	if err := checkLayerBytes(pinned, m.Layers, s.MaxBytes); err != nil {
		return nil, err
	}
	dig, err := img.Digest()
	if err != nil {
		return nil, err
	}
	c := &cache{dir: filepath.Join(cacheDir, "blobs", "sha256"), sources: pullers[at:], progress: s.Progress}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return nil, err
	}
	return &cachedImage{digest: dig.String(), manifest: m, config: cfg, dir: c.dir,
		downloads: c.start(ctx, m.Layers, s.Parallelism)}, nil
}

// puller is an authenticated client for one source.
type puller struct {
	source
	opts []remote.Option
	cred credentials
}

func (s settings) pullers(ctx context.Context, srcs []source) ([]puller, error) {
	out := make([]puller, 0, len(srcs))
	for _, src := range srcs {
		ropts, cred, err := s.remoteOptions(ctx, src.repo)
		if err != nil {
			return nil, err
		}
		p, err := remote.NewPuller(ropts...)
		if err != nil {
			return nil, err
		}
		// Reuse keeps token exchanges across the layer fetches.
		out = append(out, puller{source: src, opts: slices.Concat(ropts, []remote.Option{remote.Reuse(p)}), cred: cred})
	}
	return out, nil
}

// manifest fetches the pinned manifest and config from the first source that
// has them, returning that source's index.
func (s settings) manifest(ctx context.Context, d name.Digest, ps []puller) (v1.Image, *v1.Manifest, *v1.ConfigFile, int, error) {
	var mirrorErrs []error
	for i, p := range ps {
		ref := retarget(d, p.repo)
		img, m, cfg, err := s.manifestAt(ref, p)
		if err == nil {
			return img, m, cfg, i, nil
		}
		err = registryError(err, ref, p.cred)
		if !p.mirror || ctx.Err() != nil {
			return nil, nil, nil, 0, withMirrorErrors(err, mirrorErrs)
		}
		mirrorErrs = append(mirrorErrs, fmt.Errorf("mirror %s: %w", p.repo.RegistryStr(), err))
	}
	panic("unreachable: the origin is always the last source")
}

func (s settings) manifestAt(ref name.Reference, p puller) (v1.Image, *v1.Manifest, *v1.ConfigFile, error) {
	desc, err := remote.Get(ref, p.opts...)
	if err != nil {
		return nil, nil, nil, err
	}
	img, _, err := s.pickImage(ref, desc)
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := img.Manifest()
	if err != nil {
		return nil, nil, nil, err
	}
	cfg, err := img.ConfigFile()
	return img, m, cfg, err
}

// cache writes verified blobs into dir.
type cache struct {
	dir     string
	sources []puller // the source that served the manifest, then the rest

	mu          sync.Mutex
	done, total int64
	progress    func(done, total int64)
}

// start fetches layers in the background with parallelism workers, which
// take the layers lowest first: that is the order Flatten reads them in.
func (c *cache) start(ctx context.Context, layers []v1.Descriptor, parallelism int) *downloads {
	for _, l := range layers {
		c.total += l.Size
	}
	ctx, cancel := context.WithCancelCause(ctx)
	d := &downloads{ctx: ctx, cancel: cancel, all: make(chan struct{}), layers: make([]download, len(layers))}
	for i := range d.layers {
		d.layers[i].done = make(chan struct{})
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(parallelism, len(layers)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(layers); i = int(next.Add(1) - 1) {
				d.finish(i, c.fetch(ctx, i+1, layers[i]))
			}
		})
	}
	go func() {
		wg.Wait()
		cancel(errDownloaded) // releases the context; every layer is settled
		close(d.all)
	}()
	return d
}

// errClosed is what a layer read returns when Close stopped its download.
var errClosed = errors.New("image closed before the layer was downloaded")

// errDownloaded ends the downloads' context once none is left running.
var errDownloaded = errors.New("downloads finished")

// downloads tracks one Pull's background layer fetches.
type downloads struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	all    chan struct{} // closed when no download is running any more
	layers []download

	mu    sync.Mutex
	first error // the first failure, which cancelled the others
}

// download is one layer's fetch: err is set before done is closed.
type download struct {
	done chan struct{}
	err  error
}

// finish settles layer i. A download cut short by another layer's
// failure, or by Close, reports that cause rather than its own
// "context canceled".
func (d *downloads) finish(i int, err error) {
	if err != nil {
		var le *LayerError
		if cause := context.Cause(d.ctx); cause == errClosed || errors.As(cause, &le) {
			err = cause
		}
		d.mu.Lock()
		if d.first == nil {
			d.first = err
		}
		d.mu.Unlock()
		d.cancel(err)
	}
	d.layers[i].err = err
	close(d.layers[i].done)
}

// wait blocks until layer i (0-based) is in the cache or has failed.
func (d *downloads) wait(i int) error {
	<-d.layers[i].done
	return d.layers[i].err
}

func (d *downloads) waitAll() error {
	<-d.all
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.first
}

func (d *downloads) close() error {
	d.cancel(errClosed)
	if err := d.waitAll(); !errors.Is(err, errClosed) {
		return err
	}
	return nil
}

// fetch brings layer n (1-based) into the cache, trying each source in turn.
func (c *cache) fetch(ctx context.Context, n int, l v1.Descriptor) error {
	if err := ctx.Err(); err != nil {
		return layerError(n, l, err) // a queued download after a failure: do not start it
	}
	if l.Digest.Algorithm != "sha256" {
		return fmt.Errorf("layer %d %s: unsupported digest algorithm", n, l.Digest)
	}
	final := filepath.Join(c.dir, l.Digest.Hex)
	if fi, err := os.Stat(final); err == nil && fi.Size() == l.Size {
		c.add(l.Size) // written by an earlier pull, verified then
		return nil
	}
	var errs []error
	for _, p := range c.sources {
		err := c.fetchFrom(ctx, p, n, l, final)
		if err == nil {
			return nil
		}
		if !p.mirror || ctx.Err() != nil {
			return withMirrorErrors(err, errs)
		}
		errs = append(errs, fmt.Errorf("mirror %s: %w", p.repo.RegistryStr(), err))
	}
	panic("unreachable: the origin is always the last source")
}

func (c *cache) fetchFrom(ctx context.Context, p puller, n int, l v1.Descriptor, final string) (err error) {
	ref := p.repo.Digest(l.Digest.String())
	// ctx is the downloads': one layer failing stops the others.
	ctx, answer := watchBlob(ctx)
	rl, err := remote.Layer(ref, slices.Concat(p.opts, []remote.Option{remote.WithContext(ctx)})...)
	if err != nil {
		return layerError(n, l, registryError(err, ref, p.cred))
	}
	rc, err := rl.Compressed()
	if err != nil {
		return layerError(n, l, blobFetchError(err, ref, p.cred, l, answer))
	}
	defer rc.Close()
	tmp, err := os.CreateTemp(c.dir, l.Digest.Hex+".part-*")
	if err != nil {
		return err
	}
	written := int64(0)
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
			c.add(-written)
		}
	}()
	w := &progressWriter{w: tmp, add: c.add, n: &written}
	// One byte past the manifest's size is enough to know it is too long.
	_, cerr := io.Copy(w, io.LimitReader(rc, l.Size+1))
	if err := verifyBlob(n, l, written, cerr, answer, ref, p.cred, tmp); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), final)
}

// verifyBlob checks what arrived in tmp against the manifest's descriptor.
// The content's digest is go-containerregistry's to check, and only its,
// so that each byte is hashed once: remote.Layer's Compressed hashes the
// body as it is read and fails the read that meets its end when the sum is
// not the digest asked for. A copy that ended without error at the
// manifest's size has met that end (its limit is one byte further), so
// the check ran. Which failure cerr is comes from the wire (answer), not
// from its text: a body that ended cleanly at the manifest's size and
// still failed was refused for its content.
func verifyBlob(n int, l v1.Descriptor, got int64, cerr error, answer *blobAnswer, ref name.Digest, cred credentials, tmp *os.File) error {
	switch {
	case got > l.Size:
		return layerError(n, l, fmt.Errorf("size mismatch: the registry sent more than the manifest's %d bytes", l.Size))
	case cerr != nil && !answer.bodyEnded():
		return layerError(n, l, registryError(cerr, ref, cred))
	case got != l.Size:
		return layerError(n, l, fmt.Errorf("size mismatch: the registry sent %d bytes, the manifest says %d", got, l.Size))
	case cerr != nil:
		sent, err := fileDigest(tmp)
		if err != nil {
			return layerError(n, l, err)
		}
		if sent == l.Digest {
			// The content is right: go-containerregistry refused the
			// blob for something else, which its error says.
			return layerError(n, l, registryError(cerr, ref, cred))
		}
		return layerError(n, l, fmt.Errorf("%w: the registry sent %s", ErrDigestMismatch, sent))
	}
	return nil
}

// fileDigest hashes f from its start. It runs on a refused blob only, to
// name what the registry sent: go-containerregistry's error keeps the sum
// it got in its text alone.
func fileDigest(f *os.File) (v1.Hash, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return v1.Hash{}, err
	}
	h, _, err := v1.SHA256(f)
	return h, err
}

// blobFetchError reports a failure to start a blob download; a
// Content-Length other than the manifest's size is a size mismatch.
func blobFetchError(err error, ref name.Digest, cred credentials, l v1.Descriptor, answer *blobAnswer) error {
	if answer.sizeDiffers(l.Size) {
		return fmt.Errorf("size mismatch: %w", err)
	}
	return registryError(err, ref, cred)
}

func layerError(n int, l v1.Descriptor, err error) error {
	return &LayerError{Layer: n, Digest: l.Digest.String(), Err: err}
}

// LayerError is a failure to fetch or verify one layer.
type LayerError struct {
	Layer  int    // 1-based position in the manifest
	Digest string // the manifest's digest for it
	Err    error
}

func (e *LayerError) Error() string { return fmt.Sprintf("layer %d %s: %v", e.Layer, e.Digest, e.Err) }
func (e *LayerError) Unwrap() error { return e.Err }

// ErrDigestMismatch matches (errors.Is) a LayerError whose content did not
// hash to the manifest's digest.
var ErrDigestMismatch = errors.New("digest mismatch")

func (c *cache) add(delta int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.done += delta
	if c.progress != nil {
		c.progress(c.done, c.total)
	}
}

// progressWriter counts bytes and reports them as they reach the cache.
type progressWriter struct {
	w   io.Writer
	add func(int64)
	n   *int64
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	*p.n += int64(n)
	p.add(int64(n))
	return n, err
}

// ErrTooLarge marks an image whose layers add up to more than
// Options.MaxBytes.
var ErrTooLarge = errors.New("image too large")

// checkLayerBytes refuses a manifest whose layers declare a negative size
// or more than max bytes together: each download is already held to its
// descriptor's size, so this caps the whole pull.
func checkLayerBytes(pinned string, layers []v1.Descriptor, max int64) error {
	if max == 0 {
		max = DefaultMaxBytes
	}
	var total int64
	for i, l := range layers {
		if l.Size < 0 {
			return fmt.Errorf("%s: layer %d (%s) declares a negative size", pinned, i+1, l.Digest)
		}
		if total += l.Size; max > 0 && total > max {
			return fmt.Errorf("%w: %s: its layers declare more than %d bytes (the limit)", ErrTooLarge, pinned, max)
		}
	}
	return nil
}
