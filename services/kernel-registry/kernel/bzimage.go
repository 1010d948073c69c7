package kernel

import (
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz/lzma"

	"github.com/slipway/slipway/services/kernel-registry/internal/xz"
)

// Offsets in the x86 boot sector and setup header
// (Documentation/arch/x86/boot.rst).
const (
	offSetupSects    = 0x1f1
	offSysSize       = 0x1f4
	offBootFlag      = 0x1fe
	offHeaderMagic   = 0x202
	offVersion       = 0x206
	offKernelVersion = 0x20e
	offLoadFlags     = 0x211
	offXLoadFlags    = 0x236
	offPayloadOffset = 0x248
	offPayloadLength = 0x24c
	setupHeaderEnd   = 0x270

	loadedHigh  = 0x01 // loadflags: a bzImage (protected-mode code at 1 MiB)
	xlfKernel64 = 0x01 // xloadflags: has the legacy 64-bit entry point

	minProtocolPayload = 0x208 // payload_offset/_length appeared in 2.08
	minProtocolXLoad   = 0x20c // xloadflags appeared in 2.12
)

// MaxVmlinux bounds what ExtractVmlinux writes: a payload that inflates
// past it is refused as a decompression bomb.
const MaxVmlinux = 1 << 30

// maxDict bounds the dictionary an xz or lzma payload may ask for (the
// kernel's own use 32 and 64 MiB): the decoder allocates it up front.
const maxDict = 256 << 20

func isBzImage(h []byte) bool {
	return len(h) >= offHeaderMagic+4 && h[offBootFlag] == 0x55 && h[offBootFlag+1] == 0xaa &&
		bytes.Equal(h[offHeaderMagic:offHeaderMagic+4], []byte("HdrS"))
}

// inspectBzImage reads the setup header: the protocol, the 64-bit flag, the
// version string and where the payload lies, which must be inside the file.
func inspectBzImage(r io.ReaderAt, size int64, head []byte, f Facts) (Facts, error) {
	f.Format = FormatBzImage
	if len(head) < setupHeaderEnd {
		return f, fmt.Errorf("%w: truncated bzImage: %d bytes, less than its %d-byte setup header", ErrTruncated, size, setupHeaderEnd)
	}
	le16 := func(o int) int64 { return int64(binary.LittleEndian.Uint16(head[o:])) }
	le32 := func(o int) int64 { return int64(binary.LittleEndian.Uint32(head[o:])) }
	proto := le16(offVersion)
	f.BootProtocol = fmt.Sprintf("%d.%02d", proto>>8, proto&0xff)
	if ptr := le16(offKernelVersion); ptr != 0 {
		f.Banner = readCString(r, 0x200+ptr, 256)
		f.Version = releaseOf(f.Banner, "")
	}
	if head[offLoadFlags]&loadedHigh == 0 {
		return f, fmt.Errorf("%w: a zImage (boot protocol %s, loaded low): only bzImages are supported", ErrNotKernel, f.BootProtocol)
	}
	if proto < minProtocolPayload {
		return f, fmt.Errorf("%w: bzImage boot protocol %s predates 2.08, whose header locates the payload", ErrCompression, f.BootProtocol)
	}
	f.Arch = "i386"
	if proto >= minProtocolXLoad && le16(offXLoadFlags)&xlfKernel64 != 0 {
		f.Arch = ArchX86_64
	}
	setupSects := int64(head[offSetupSects])
	if setupSects == 0 {
		setupSects = 4 // boot.rst: 0 means 4
	}
	f.PayloadOffset = (setupSects+1)*512 + le32(offPayloadOffset)
	f.PayloadLength = le32(offPayloadLength)
	if end := f.PayloadOffset + f.PayloadLength; end > size || f.PayloadLength < 4 {
		return f, fmt.Errorf("%w: truncated bzImage: its header puts the compressed kernel at bytes %d–%d, the file has %d bytes",
			ErrTruncated, f.PayloadOffset, end, size)
	}
	// syssize counts the protected-mode code in 16-byte paragraphs: a
	// file cut after the payload but before its end is short of it.
	if want := (setupSects+1)*512 + le32(offSysSize)*16; want > size {
		return f, fmt.Errorf("%w: truncated bzImage: its header says %d bytes, the file has %d", ErrTruncated, want, size)
	}
	if f.Arch != ArchX86_64 {
		return f, &ArchError{Arch: f.Arch, What: "32-bit bzImage"}
	}
	magic := make([]byte, 16)
	if _, err := r.ReadAt(magic, f.PayloadOffset); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("read the bzImage payload: %w", err)
	}
	f.Compression = detectCompression(magic)
	f.FirecrackerReason = "a bzImage: Firecracker boots an uncompressed x86_64 ELF vmlinux (extract it from the bzImage)"
	if f.Compression == "" {
		return f, fmt.Errorf("%w: unknown compression of the bzImage payload (it starts with %s)", ErrCompression, hexStart(magic))
	}
	return f, nil
}

// readCString reads a NUL-terminated string of at most max bytes at off.
func readCString(r io.ReaderAt, off int64, max int) string {
	b := make([]byte, max)
	n, _ := r.ReadAt(b, off)
	b = b[:n]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(bytes.TrimSpace(b))
}

// detectCompression recognises a payload by its magic, as the kernel's
// decompressors do (lib/decompress.c).
func detectCompression(m []byte) Compression {
	switch {
	case bytes.HasPrefix(m, []byte{0x1f, 0x8b}):
		return CompressionGzip
	case bytes.HasPrefix(m, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return CompressionXZ
	case bytes.HasPrefix(m, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return CompressionZstd
	case bytes.HasPrefix(m, []byte{0x02, 0x21, 0x4c, 0x18}):
		return CompressionLZ4 // the legacy frame the kernel's lz4 -l writes
	case bytes.HasPrefix(m, []byte("BZh")):
		return CompressionBzip2
	case bytes.HasPrefix(m, []byte{0x5d, 0x00, 0x00}):
		return CompressionLZMA // .lzma (LZMA-alone) with lc=3 lp=0 pb=2
	case bytes.HasPrefix(m, []byte{0x89, 'L', 'Z', 'O'}):
		return CompressionLZO
	case isELF(m):
		return CompressionNone
	}
	return ""
}

// ExtractVmlinux decompresses the payload of the bzImage r (size bytes) —
// the kernel's uncompressed ELF vmlinux — into w, as a stream, and returns
// the bytes written. The result must be an ELF whose length matches the
// size the kernel build appended to the payload.
func ExtractVmlinux(r io.ReaderAt, size int64, w io.Writer) (int64, error) {
	f, err := Inspect(r, size)
	if err != nil {
		return 0, err
	}
	if f.Format != FormatBzImage {
		return 0, fmt.Errorf("not a bzImage but an %s kernel: it is already uncompressed", f.Format)
	}
	var tail [4]byte
	if _, err := r.ReadAt(tail[:], f.PayloadOffset+f.PayloadLength-4); err != nil {
		return 0, fmt.Errorf("read the bzImage payload's size: %w", err)
	}
	want := binary.LittleEndian.Uint32(tail[:])
	// Every compressor but gzip (whose own trailer is the size) gets the
	// uncompressed size appended by the kernel build (size_append).
	body := f.PayloadLength
	if f.Compression != CompressionGzip && f.Compression != CompressionNone {
		body -= 4
	}
	dec, err := decompressor(f.Compression, io.NewSectionReader(r, f.PayloadOffset, body))
	if err != nil {
		return 0, err
	}
	cw := &elfCheckWriter{w: w}
	n, err := io.Copy(cw, io.LimitReader(dec, MaxVmlinux+1))
	if c, ok := dec.(io.Closer); ok {
		c.Close()
	}
	switch {
	case err != nil && cw.err != nil:
		return n, cw.err
	case errors.Is(err, ErrCompression):
		return n, fmt.Errorf("decompress the %s payload: %w", f.Compression, err)
	case err != nil:
		return n, fmt.Errorf("%w: decompress the %s payload: %v", ErrCompression, f.Compression, err)
	case n > MaxVmlinux:
		return n, fmt.Errorf("%w: the %s payload inflates past %d MiB", ErrCompression, f.Compression, MaxVmlinux>>20)
	case n < 4:
		return n, fmt.Errorf("%w: the %s payload decompresses to %d bytes, not an ELF vmlinux", ErrCompression, f.Compression, n)
	case f.Compression != CompressionNone && uint32(n) != want:
		return n, fmt.Errorf("%w: the %s payload decompressed to %d bytes, the bzImage says %d", ErrCompression, f.Compression, n, want)
	}
	return n, nil
}

// decompressor opens the payload body for reading.
func decompressor(c Compression, body io.Reader) (io.Reader, error) {
	switch c {
	case CompressionNone:
		return body, nil
	case CompressionGzip:
		zr, err := gzip.NewReader(body)
		if err != nil {
			return nil, fmt.Errorf("%w: gzip: %v", ErrCompression, err)
		}
		zr.Multistream(false)
		return zr, nil
	case CompressionXZ:
		// One block, without declared sizes: a streaming decoder.
		zr, err := xz.NewReader(body, xz.Options{MaxDict: maxDict})
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrCompression, err)
		}
		return zr, nil
	case CompressionZstd:
		zr, err := zstd.NewReader(body, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(MaxVmlinux))
		if err != nil {
			return nil, fmt.Errorf("%w: zstd: %v", ErrCompression, err)
		}
		return zr.IOReadCloser(), nil
	case CompressionLZ4:
		return lz4.NewReader(body), nil
	case CompressionBzip2:
		return bzip2.NewReader(body), nil
	case CompressionLZMA:
		return newLZMAReader(body)
	}
	return nil, fmt.Errorf("%w: Slipway does not decompress %s payloads", ErrCompression, c)
}

// newLZMAReader reads an .lzma stream after checking its dictionary size,
// which the decoder would otherwise allocate whatever it says.
func newLZMAReader(body io.Reader) (io.Reader, error) {
	var h [13]byte
	if _, err := io.ReadFull(body, h[:]); err != nil {
		return nil, fmt.Errorf("%w: lzma header: %v", ErrCompression, err)
	}
	if dict := binary.LittleEndian.Uint32(h[1:5]); dict > maxDict {
		return nil, fmt.Errorf("%w: the lzma payload asks for a %d MiB dictionary, more than %d MiB", ErrCompression, dict>>20, maxDict>>20)
	}
	zr, err := lzma.NewReader(io.MultiReader(bytes.NewReader(h[:]), body))
	if err != nil {
		return nil, fmt.Errorf("%w: lzma: %v", ErrCompression, err)
	}
	return zr, nil
}

// elfCheckWriter refuses output that does not start like an ELF file, so a
// payload that decompresses to something else fails early.
type elfCheckWriter struct {
	w    io.Writer
	head []byte
	err  error
}

func (c *elfCheckWriter) Write(p []byte) (int, error) {
	if len(c.head) < 4 {
		c.head = append(c.head, p[:min(len(p), 4-len(c.head))]...)
		if !bytes.HasPrefix([]byte(elfMagic), c.head) {
			c.err = fmt.Errorf("%w: the payload decompresses to something other than an ELF vmlinux (it starts with %s)", ErrCompression, hexStart(c.head))
			return 0, c.err
		}
	}
	return c.w.Write(p)
}

const elfMagic = "\x7fELF"
