package fetch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/netguard"
)

// DefaultMaxBytes caps the decompressed output when Options.MaxBytes is 0.
const DefaultMaxBytes int64 = 64 << 30

// Options tune a Fetch. The zero value works for http(s) sources.
type Options struct {
	// Store reads s3:// sources; required for them.
	Store *blob.Store
	// Guard says which addresses http(s) sources (and every redirect
	// hop) may be dialed at; nil refuses loopback, private and other
	// special addresses (see package netguard). The client has connect
	// and header timeouts but no overall one.
	Guard *netguard.Policy
	// Checksums are the expected digests of the bytes as fetched,
	// before decompression ("md5:<hex>", "sha256:<hex>",
	// "sha512:<hex>"; at most one per algorithm; "" entries are
	// skipped); every one is checked.
	Checksums []string
	// MaxBytes caps the size of the output (after decompression); 0
	// means DefaultMaxBytes, negative means no cap.
	MaxBytes int64
	// Progress, when set, is called as bytes arrive with the bytes
	// fetched so far and the total (0 when unknown).
	Progress func(done, total int64)
	// TempDir holds the output when dst is ""; "" means os.TempDir().
	TempDir string
	// Retries is how many times a dropped connection, or a failed request
	// to resume it, is retried over the whole fetch; 0 means 8, negative
	// means none. A first request that fails is not retried here: the
	// caller's redelivery does, visibly.
	Retries int
	// RetryDelay is the first backoff, doubled on each retry up to 30s;
	// 0 means 1s.
	RetryDelay time.Duration
	// IdleTimeout abandons and resumes a connection that delivers no
	// bytes for this long; 0 means 2 minutes.
	IdleTimeout time.Duration
	// XZBinary, when set, is an xz program that decompresses xz data in
	// a child process (empty environment, memory-limited), about twice
	// as fast as the Go decoder and on its own core; "" uses the Go
	// decoder.
	XZBinary string
	// Verbatim keeps the bytes as fetched: no decompression. Files such
	// as compressed initrds must be stored exactly as given.
	Verbatim bool
	// Bound, when set, sees the first BoundHead bytes of the output (all
	// of it when shorter) and may lower MaxBytes for the rest: an image
	// whose header declares its virtual size cannot need much more. It
	// returns the new cap (0 keeps MaxBytes) and why, for the error.
	Bound func(head []byte) (max int64, why string)
}

// BoundHead is how much of the output Options.Bound sees.
const BoundHead = 4096

// Result describes a fetched input.
type Result struct {
	Path          string // the local file
	Compression   string // None, Gzip, Bzip2, XZ or Zstd
	FetchedBytes  int64  // bytes as fetched
	Size          int64  // bytes of Path (after decompression)
	SHA256Fetched string // hex SHA-256 of the fetched bytes
	// Sums are the hex digests of the fetched bytes by algorithm: SHA256
	// always, MD5 and SHA512 when a checksum named them.
	Sums map[string]string
}

// File copies src ("s3://bucket/key", "http://…", "https://…") to the
// file dst, decompressing it on the way. dst "" makes a temporary file in
// opts.TempDir. On error nothing is left at dst. Errors that retrying
// cannot fix satisfy IsPermanent.
func File(ctx context.Context, src string, dst string, opts Options) (Result, error) {
	opts = opts.withDefaults()
	want, err := ParseChecksums(opts.Checksums...)
	if err != nil {
		return Result{}, err
	}
	o, err := newOrigin(src, opts)
	if err != nil {
		return Result{}, err
	}
	f, err := createOutput(dst, opts.TempDir)
	if err != nil {
		return Result{}, err
	}
	res, err := fetchInto(ctx, o, f, opts, want)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("close %s: %w", f.Name(), cerr)
	}
	if err == nil {
		err = verify(o.String(), want, res.Sums)
	}
	if err != nil {
		os.Remove(f.Name())
		return Result{}, err
	}
	return res, nil
}

func (o Options) withDefaults() Options {
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.Retries == 0 {
		o.Retries = 8
	}
	if o.RetryDelay <= 0 {
		o.RetryDelay = time.Second
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 2 * time.Minute
	}
	if o.TempDir == "" {
		o.TempDir = os.TempDir()
	}
	return o
}

func createOutput(dst, tempDir string) (*os.File, error) {
	if dst == "" {
		f, err := os.CreateTemp(tempDir, "fetch-*")
		if err != nil {
			return nil, fmt.Errorf("create temporary file in %s: %w", tempDir, err)
		}
		return f, nil
	}
	f, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", dst, err)
	}
	return f, nil
}

// newResumer reads o with the retries and timeouts of opts.
func newResumer(ctx context.Context, o origin, opts Options) *resumer {
	return &resumer{
		ctx: ctx, origin: o, retries: max(opts.Retries, 0),
		delay: opts.RetryDelay, maxDelay: 30 * time.Second, idle: opts.IdleTimeout, total: -1,
	}
}

// fetchInto runs the pipeline origin → hash → decompress → cap → f,
// starting it over whenever the origin had to restart from byte 0.
func fetchInto(ctx context.Context, o origin, f *os.File, opts Options, want []Checksum) (Result, error) {
	r := newResumer(ctx, o, opts)
	defer r.closeBody()
	dir := filepath.Dir(f.Name())
	w := &sparseWriter{f: f, dir: dir}
	buf := make([]byte, 1<<20)
	for {
		res, err := copyOnce(r, w, buf, opts, want)
		if errors.Is(err, errRestart) || (err != nil && r.restart) {
			if err := w.reset(); err != nil {
				return Result{}, fmt.Errorf("restart %s: %w", f.Name(), err)
			}
			r.resume()
			continue
		}
		if err != nil {
			return Result{}, err
		}
		res.Path = f.Name()
		return res, nil
	}
}

// pipeline is one pass over a resumer's bytes: hashed and counted as
// fetched, then decompressed and capped.
type pipeline struct {
	r    *resumer
	in   *hashingReader
	br   *bufio.Reader
	dec  io.ReadCloser
	out  *limitReader
	comp string
	want []Checksum
	max  int64 // of the decompressed bytes, 0 for no cap
}

// newPipeline opens the resumer's first body and detects its compression.
func newPipeline(r *resumer, opts Options, want []Checksum) (*pipeline, error) {
	p := &pipeline{r: r, in: &hashingReader{r: r, d: newDigests(want), progress: opts.Progress}, want: want, max: opts.MaxBytes}
	p.br = bufio.NewReaderSize(p.in, 64<<10)
	if _, err := p.br.Peek(1); err != nil && err != io.EOF {
		return nil, err // nothing opened yet: the resumer's error
	}
	p.dec, p.comp = io.NopCloser(p.br), None
	if !opts.Verbatim {
		var err error
		if p.dec, p.comp, err = decompressor(p.br, opts.XZBinary); err != nil {
			return nil, r.explain(permanentf("%s: %w", r.origin, err))
		}
	}
	p.out = &limitReader{r: p.dec, max: opts.MaxBytes, bound: opts.Bound}
	return p, nil
}

// drain hashes what may trail the compressed stream too (the checksum is
// of the whole input) and returns the digests.
func (p *pipeline) drain() (map[string]string, error) {
	if _, err := io.Copy(io.Discard, p.br); err != nil {
		return nil, p.r.explain(err)
	}
	return p.in.d.sums(), nil
}

// blame explains a failure of the decompressor by the source's checksums
// when it can. Corrupt compressed data is what a tampered file looks like,
// and a decompressor notices it before the end of the data, where the
// digests are checked. With digests expected, the rest of the source is
// fetched and hashed (no more than the cap on its decompressed bytes, or
// what the origin said it holds), and a digest that differs is the error:
// it names what was expected and what arrived. Otherwise, or when the rest
// cannot be read, the decompressor's error stands.
func (p *pipeline) blame(err error) error {
	var lim *LimitError
	var ns *NoSpaceError
	if len(p.want) == 0 || p.comp == None || p.r.err != nil || p.r.restart ||
		errors.As(err, &lim) || errors.As(err, &ns) {
		return err
	}
	limit := p.max
	if p.r.total > 0 {
		limit = p.r.total - p.in.n
	}
	limit += int64(p.br.Buffered()) // hashed already, not read yet
	if limit < 0 {
		return err
	}
	p.dec.Close() // a decompressing child stops reading the input first
	n, derr := io.Copy(io.Discard, io.LimitReader(p.br, limit+1))
	if derr != nil || n > limit || p.r.err != nil || p.r.restart {
		return err
	}
	if verr := verify(p.r.origin.String(), p.want, p.in.d.sums()); verr != nil {
		return verr
	}
	return err
}

// copyOnce reads the resumer from its current body to the end.
func copyOnce(r *resumer, w *sparseWriter, buf []byte, opts Options, want []Checksum) (Result, error) {
	p, err := newPipeline(r, opts, want)
	if err != nil {
		return Result{}, err
	}
	defer p.dec.Close()
	if r.total > 0 {
		if err := ensureFree(w.dir, r.total); err != nil {
			return Result{}, err
		}
	}
	if _, err := io.CopyBuffer(w, p.out, buf); err != nil {
		return Result{}, p.blame(r.explain(copyError(r.origin, p.comp, err)))
	}
	sums, err := p.drain()
	if err != nil {
		return Result{}, err
	}
	if err := w.finish(); err != nil {
		return Result{}, fmt.Errorf("size %s: %w", w.f.Name(), err)
	}
	return Result{
		Compression:   p.comp,
		FetchedBytes:  p.in.n,
		Size:          w.off,
		SHA256Fetched: sums[SHA256],
		Sums:          sums,
	}, nil
}

// explain prefers the resumer's own failure (network, cancellation,
// restart) to what a decompressor made of it.
func (r *resumer) explain(err error) error {
	switch {
	case r.restart:
		return errRestart
	case r.err != nil:
		return r.err
	}
	return err
}

// copyError names corrupt compressed data as such; limit and space errors
// pass through.
func copyError(o origin, comp string, err error) error {
	var lim *LimitError
	var ns *NoSpaceError
	if errors.As(err, &lim) || errors.As(err, &ns) || comp == None {
		return err
	}
	return permanentf("%s: %s data: %w", o, comp, err)
}

// hashingReader hashes and counts the fetched bytes and reports progress.
type hashingReader struct {
	r        *resumer
	d        *digests
	n        int64
	progress func(done, total int64)
}

func (hr *hashingReader) Read(p []byte) (int, error) {
	n, err := hr.r.Read(p)
	if n > 0 {
		hr.d.Write(p[:n])
		hr.n += int64(n)
		if hr.progress != nil {
			hr.progress(hr.n, max(hr.r.total, 0))
		}
	}
	return n, err
}
