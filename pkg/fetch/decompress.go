package fetch

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"
)

// Compression names reported in Result.Compression.
const (
	None  = ""
	Gzip  = "gzip"
	Bzip2 = "bzip2"
	XZ    = "xz"
	Zstd  = "zstd"
)

// xzMaxDict bounds the LZMA2 dictionary an xz stream may ask for: the
// decoder allocates it up front. `xz -9` uses 64 MiB.
const xzMaxDict = 256 << 20

// zstdMaxWindow bounds the memory a zstd stream may make the decoder use:
// 128 MiB is what `zstd --long` produces.
const zstdMaxWindow = 128 << 20

var magics = []struct {
	name  string
	magic []byte
}{
	{Gzip, []byte{0x1f, 0x8b, 0x08}}, // 08: deflate, the only method defined
	{Bzip2, []byte("BZh")},
	{XZ, []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}},
	{Zstd, []byte{0x28, 0xb5, 0x2f, 0xfd}},
}

// detect names the compression whose magic starts head, or None.
func detect(head []byte) string {
	for _, m := range magics {
		if bytes.HasPrefix(head, m.magic) {
			return m.name
		}
	}
	return None
}

// decompressor returns a reader of the decompressed stream of br, detected
// from its first bytes, and the name of the compression. xzBinary, when
// set, decompresses xz in a child process (see xzCommand).
func decompressor(br *bufio.Reader, xzBinary string) (io.ReadCloser, string, error) {
	head, _ := br.Peek(6) // shorter input: no magic, read as is
	name := detect(head)
	var (
		rc  io.ReadCloser
		err error
	)
	switch name {
	case None:
		rc = io.NopCloser(br)
	case Gzip:
		rc, err = gzip.NewReader(br) // multistream: `cat a.gz b.gz` works like gunzip
	case Bzip2:
		rc = io.NopCloser(bzip2.NewReader(br))
	case XZ:
		if err = checkXZDict(br); err != nil {
			return nil, name, err
		}
		if xzBinary != "" {
			rc, err = startXZ(xzBinary, br)
			break
		}
		var r io.Reader
		r, err = xz.NewReader(br)
		rc = io.NopCloser(r)
	case Zstd:
		var d *zstd.Decoder
		d, err = zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(zstdMaxWindow))
		if err == nil {
			rc = zstdCloser{d}
		}
	}
	if err != nil {
		return nil, name, fmt.Errorf("%s header: %w", name, err)
	}
	return rc, name, nil
}

type zstdCloser struct{ *zstd.Decoder }

func (z zstdCloser) Close() error { z.Decoder.Close(); return nil }

// limitReader fails with a LimitError once more than max bytes came out.
// With bound set, the first BoundHead bytes may lower max (see
// Options.Bound).
type limitReader struct {
	r     io.Reader
	n     int64
	max   int64
	why   string
	bound func([]byte) (int64, string)
	head  []byte
}

func (l *limitReader) Read(p []byte) (int, error) {
	n, err := l.r.Read(p)
	l.n += int64(n)
	if l.bound != nil {
		l.head = append(l.head, p[:min(n, BoundHead-len(l.head))]...)
		if len(l.head) == BoundHead || err != nil {
			if b, why := l.bound(l.head); b > 0 && (l.max <= 0 || b < l.max) {
				l.max, l.why = b, why
			}
			l.bound, l.head = nil, nil
		}
	}
	if l.max > 0 && l.n > l.max {
		return 0, &LimitError{Limit: l.max, Why: l.why}
	}
	return n, err
}

// checkXZDict refuses an xz stream whose first block asks for a dictionary
// larger than xzMaxDict. Later blocks are not checked (xz writes them all
// with the same settings).
func checkXZDict(br *bufio.Reader) error {
	const streamHeader = 12
	head, _ := br.Peek(streamHeader + 1024) // a block header is at most 1024 bytes
	if len(head) <= streamHeader || head[streamHeader] == 0 {
		return nil // no block: the decoder judges the rest
	}
	blk := head[streamHeader:]
	size := (int(blk[0]) + 1) * 4
	if len(blk) < size || size < 2 {
		return nil
	}
	blk = blk[:size]
	flags, pos := blk[1], 2
	for _, present := range []bool{flags&0x40 != 0, flags&0x80 != 0} {
		if present {
			if _, n := uvarint(blk[pos:]); n > 0 {
				pos += n
			}
		}
	}
	for range int(flags&3) + 1 {
		id, n := uvarint(blk[pos:])
		if n <= 0 {
			return nil
		}
		pos += n
		propSize, n := uvarint(blk[pos:])
		if n <= 0 || pos+n+int(propSize) > len(blk) {
			return nil
		}
		pos += n
		if id == 0x21 && propSize == 1 { // LZMA2
			if d := lzma2Dict(blk[pos]); d > xzMaxDict {
				return fmt.Errorf("xz header: dictionary of %s exceeds the limit of %s", humanBytes(d), humanBytes(xzMaxDict))
			}
		}
		pos += int(propSize)
	}
	return nil
}

// lzma2Dict decodes the LZMA2 dictionary size property.
func lzma2Dict(b byte) int64 {
	if b >= 40 {
		return 1<<32 - 1
	}
	return int64(2|b&1) << (b/2 + 11)
}

func uvarint(b []byte) (uint64, int) {
	var v uint64
	for i := 0; i < len(b) && i < 9; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	return 0, 0
}
