// Package xz decodes .xz streams (tukaani.org's xz-file-format) with the
// filters Linux kernels and packages use: LZMA2, after the x86 BCJ filter
// when the kernel build's xz_wrap.sh put it there. ulikunitz/xz decodes
// LZMA2-only streams; this package parses the container itself, hands each
// block's LZMA2 data to ulikunitz's lzma.Reader2, undoes BCJ on the way out
// and verifies every block's check (CRC32, CRC64 or SHA-256).
//
// Blocks that declare their sizes (multi-threaded xz writes them, as in
// Debian's packages) can be decoded in parallel: Options.Workers blocks at
// once, each held whole in memory, delivered in order. A block without
// sizes, or larger than MaxParallelBlock, switches the rest of the stream to
// one streaming decoder. Only the first stream of a file is read.
package xz

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"

	"github.com/ulikunitz/xz/lzma"
)

const (
	filterX86   = 0x04
	filterLZMA2 = 0x21

	checkNone   = 0x00
	checkCRC32  = 0x01
	checkCRC64  = 0x04
	checkSHA256 = 0x0a
)

// DefaultMaxDict bounds the dictionary a stream may ask for (the decoder
// allocates it up front); MaxParallelBlock bounds a block decoded whole.
const (
	DefaultMaxDict   = 256 << 20
	MaxParallelBlock = 64 << 20
)

var (
	magic      = []byte{0xfd, '7', 'z', 'X', 'Z', 0}
	crc64Table = crc64.MakeTable(crc64.ECMA)
)

// Options tune NewReader.
type Options struct {
	// Workers is how many blocks are decoded at once; <= 1 decodes as one
	// stream.
	Workers int
	// MaxDict bounds the LZMA2 dictionary; default DefaultMaxDict.
	MaxDict int
}

// NewReader decodes the .xz stream r. Close stops background decoding.
func NewReader(r io.Reader, opts Options) (io.ReadCloser, error) {
	if opts.MaxDict <= 0 {
		opts.MaxDict = DefaultMaxDict
	}
	src := &countingReader{r: bufio.NewReaderSize(r, 64<<10)}
	var h [12]byte
	if _, err := io.ReadFull(src, h[:]); err != nil {
		return nil, fmt.Errorf("xz: stream header: %w", err)
	}
	if !bytes.Equal(h[:6], magic) {
		return nil, errors.New("xz: no xz magic")
	}
	if crc32.ChecksumIEEE(h[6:8]) != binary.LittleEndian.Uint32(h[8:]) {
		return nil, errors.New("xz: stream header checksum mismatch")
	}
	if h[6] != 0 || h[7]&0xf0 != 0 {
		return nil, fmt.Errorf("xz: unsupported stream flags %#x %#x", h[6], h[7])
	}
	st := stream{src: src, check: h[7] & 0x0f, maxDict: opts.MaxDict}
	if _, err := st.newHash(); err != nil {
		return nil, err
	}
	if opts.Workers <= 1 {
		return &seqReader{stream: st}, nil
	}
	return newParReader(st, opts.Workers), nil
}

// stream is what every reader of one stream shares.
type stream struct {
	src     *countingReader
	check   byte
	maxDict int
}

// newHash returns the hash of the stream's check type (nil for none).
func (st stream) newHash() (hash.Hash, error) {
	switch st.check {
	case checkNone:
		return nil, nil
	case checkCRC32:
		return crc32.NewIEEE(), nil
	case checkCRC64:
		return crc64.New(crc64Table), nil
	case checkSHA256:
		return sha256.New(), nil
	}
	return nil, fmt.Errorf("xz: unsupported check type %d", st.check)
}

// verify compares a block's computed check with the stored one.
func (st stream) verify(h hash.Hash, stored []byte) error {
	if h == nil {
		return nil
	}
	got := h.Sum(nil)
	if st.check != checkSHA256 {
		// CRC32 and CRC64 are stored little-endian; Sum is big-endian.
		for i, j := 0, len(got)-1; i < j; i, j = i+1, j-1 {
			got[i], got[j] = got[j], got[i]
		}
	}
	if !bytes.Equal(got, stored) {
		return errors.New("xz: block check mismatch: the data is corrupt")
	}
	return nil
}

// checkSize is the stored check's length.
func (st stream) checkSize() int {
	return map[byte]int{checkNone: 0, checkCRC32: 4, checkCRC64: 8, checkSHA256: 32}[st.check]
}

// blockHeader is one block's header.
type blockHeader struct {
	size              int64 // bytes of the header itself
	compSize, uncSize int64 // -1 when not declared
	filters           []filter
}

type filter struct {
	id    uint64
	props []byte
}

// readBlockHeader reads the next block header; nil at the index, which
// ends the stream's blocks.
func (st stream) readBlockHeader() (*blockHeader, error) {
	first, err := st.src.ReadByte()
	if err != nil {
		return nil, fmt.Errorf("xz: block header: %w", err)
	}
	if first == 0 {
		return nil, nil
	}
	h := make([]byte, (int(first)+1)*4)
	h[0] = first
	if _, err := io.ReadFull(st.src, h[1:]); err != nil {
		return nil, fmt.Errorf("xz: block header: %w", err)
	}
	body, sum := h[:len(h)-4], h[len(h)-4:]
	if crc32.ChecksumIEEE(body) != binary.LittleEndian.Uint32(sum) {
		return nil, errors.New("xz: block header checksum mismatch")
	}
	return parseBlockHeader(body)
}

func parseBlockHeader(h []byte) (*blockHeader, error) {
	bh := &blockHeader{size: int64(len(h)) + 4, compSize: -1, uncSize: -1}
	flags := h[1]
	if flags&0x3c != 0 {
		return nil, errors.New("xz: reserved block flags set")
	}
	br := bytes.NewReader(h[2:])
	for _, f := range []struct {
		bit byte
		v   *int64
	}{{0x40, &bh.compSize}, {0x80, &bh.uncSize}} {
		if flags&f.bit == 0 {
			continue
		}
		v, err := binary.ReadUvarint(br)
		if err != nil || v > 1<<62 {
			return nil, errors.New("xz: bad block size field")
		}
		*f.v = int64(v)
	}
	bh.filters = make([]filter, int(flags&3)+1)
	for i := range bh.filters {
		id, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, fmt.Errorf("xz: filter id: %w", err)
		}
		n, err := binary.ReadUvarint(br)
		if err != nil || n > 64 {
			return nil, errors.New("xz: bad filter properties size")
		}
		props := make([]byte, n)
		if _, err := io.ReadFull(br, props); err != nil {
			return nil, fmt.Errorf("xz: filter properties: %w", err)
		}
		bh.filters[i] = filter{id, props}
	}
	return bh, nil
}

// decoder returns the block's uncompressed data read from r: LZMA2 last,
// x86 BCJ before it.
func (st stream) decoder(bh *blockHeader, r io.Reader) (io.Reader, error) {
	last := bh.filters[len(bh.filters)-1]
	if last.id != filterLZMA2 || len(last.props) != 1 {
		return nil, fmt.Errorf("xz: the last filter is %#x, not LZMA2", last.id)
	}
	dict, err := lzma2Dict(last.props[0], st.maxDict)
	if err != nil {
		return nil, err
	}
	lz, err := lzma.Reader2Config{DictCap: dict}.NewReader2(r)
	if err != nil {
		return nil, fmt.Errorf("xz: lzma2: %w", err)
	}
	var out io.Reader = lz
	for i := len(bh.filters) - 2; i >= 0; i-- {
		f := bh.filters[i]
		if f.id != filterX86 {
			return nil, fmt.Errorf("xz: filter %#x is not supported (only x86 BCJ and LZMA2 are)", f.id)
		}
		var start uint32
		switch len(f.props) {
		case 0:
		case 4:
			start = binary.LittleEndian.Uint32(f.props)
		default:
			return nil, fmt.Errorf("xz: x86 BCJ properties of %d bytes", len(f.props))
		}
		out = newX86BCJ(out, start)
	}
	return out, nil
}

// lzma2Dict decodes the LZMA2 dictionary-size property, within limit.
func lzma2Dict(p byte, limit int) (int, error) {
	if p > 40 {
		return 0, fmt.Errorf("xz: invalid LZMA2 dictionary size %d", p)
	}
	var size uint64 = 0xffffffff
	if p < 40 {
		size = uint64(2|(p&1)) << (p/2 + 11)
	}
	if size > uint64(limit) {
		return 0, fmt.Errorf("xz: the stream asks for a %d MiB dictionary, more than %d MiB", size>>20, limit>>20)
	}
	return max(int(size), lzma.MinDictCap), nil
}

// readTrailer reads a block's padding and stored check; blockBytes is its
// header plus compressed size.
func (st stream) readTrailer(blockBytes int64) ([]byte, error) {
	pad := (4 - blockBytes%4) % 4
	buf := make([]byte, int(pad)+st.checkSize())
	if _, err := io.ReadFull(st.src, buf); err != nil {
		return nil, fmt.Errorf("xz: block padding and check: %w", err)
	}
	if !bytes.Equal(buf[:pad], make([]byte, pad)) {
		return nil, errors.New("xz: non-zero block padding")
	}
	return buf[pad:], nil
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r *bufio.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countingReader) ReadByte() (byte, error) {
	b, err := c.r.ReadByte()
	if err == nil {
		c.n++
	}
	return b, err
}
