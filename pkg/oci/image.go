package oci

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/partial"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// maxZstdWindow bounds a zstd layer's decoder memory (zstd --long=27 needs
// 128 MiB; a hostile frame cannot ask for more).
const maxZstdWindow = 128 << 20

// cachedImage is a pulled image: manifest and config in memory (small),
// layers in the cache directory once their downloads have finished.
type cachedImage struct {
	digest    string
	manifest  *v1.Manifest
	config    *v1.ConfigFile
	dir       string
	downloads *downloads
}

func (i *cachedImage) Digest() string                  { return i.digest }
func (i *cachedImage) Config() (*v1.ConfigFile, error) { return i.config.DeepCopy(), nil }
func (i *cachedImage) Wait() error                     { return i.downloads.waitAll() }
func (i *cachedImage) Close() error                    { return i.downloads.close() }

func (i *cachedImage) Layers() ([]v1.Layer, error) {
	out := make([]v1.Layer, len(i.manifest.Layers))
	for n, d := range i.manifest.Layers {
		cl := &cachedLayer{path: filepath.Join(i.dir, d.Digest.Hex), desc: d, diffID: i.config.RootFS.DiffIDs[n], n: n + 1,
			downloaded: func() error { return i.downloads.wait(n) }}
		l, err := partial.CompressedToLayer(cl)
		if err != nil {
			return nil, err
		}
		out[n] = &verifiedLayer{Layer: l, cl: cl}
	}
	return out, nil
}

// cachedLayer is one layer's compressed blob in the cache; downloaded
// waits until it is there.
type cachedLayer struct {
	path       string
	desc       v1.Descriptor
	diffID     v1.Hash
	n          int
	downloaded func() error
}

func (l *cachedLayer) Digest() (v1.Hash, error)            { return l.desc.Digest, nil }
func (l *cachedLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *cachedLayer) Size() (int64, error)                { return l.desc.Size, nil }
func (l *cachedLayer) MediaType() (types.MediaType, error) { return l.desc.MediaType, nil }

func (l *cachedLayer) Compressed() (io.ReadCloser, error) {
	f, err := l.open()
	if err != nil {
		return nil, err // not a typed nil in the interface
	}
	return f, nil
}

func (l *cachedLayer) open() (*os.File, error) {
	if err := l.downloaded(); err != nil {
		return nil, err
	}
	return os.Open(l.path)
}

// verifiedLayer decompresses on demand and checks the uncompressed stream
// against the config's diff_id, so a layer whose compressed blob matched but
// whose content is not what the config describes fails at EOF.
type verifiedLayer struct {
	v1.Layer
	cl *cachedLayer
}

func (l *verifiedLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := l.cl.open()
	if err != nil {
		return nil, err
	}
	r, closeDec, err := decompress(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("layer %d %s: %w", l.cl.n, l.cl.desc.Digest, err)
	}
	return &diffIDReader{r: r, h: newHashAhead(sha256.New()), want: l.cl.diffID, n: l.cl.n, close: func() error {
		closeDec()
		return f.Close()
	}}, nil
}

// decompress detects gzip, zstd or plain tar from the first bytes.
func decompress(r io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, err
		}
		return zr, func() { zr.Close() }, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true), zstd.WithDecoderMaxWindow(maxZstdWindow))
		if err != nil {
			return nil, nil, err
		}
		return zr, zr.Close, nil
	}
	return br, func() {}, nil
}

type diffIDReader struct {
	r     io.Reader
	h     *hashAhead
	want  v1.Hash
	n     int
	close func() error
}

func (d *diffIDReader) Read(b []byte) (int, error) {
	n, err := d.r.Read(b)
	d.h.Write(b[:n])
	if err == io.EOF {
		if got := hex.EncodeToString(d.h.Sum()); got != d.want.Hex {
			return n, fmt.Errorf("layer %d: uncompressed content is sha256:%s, the config's diff_id is %s", d.n, got, d.want)
		}
	}
	return n, err
}

func (d *diffIDReader) Close() error {
	d.h.stop()
	return d.close()
}
