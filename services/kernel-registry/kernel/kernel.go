// Package kernel examines Linux kernel files: an ELF vmlinux or an x86
// bzImage. It tells the format, the architecture, the version, whether the
// kernel has a PVH entry point (the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY,
// which lets QEMU boot the uncompressed ELF directly), whether it fits
// Firecracker, whether it embeds its configuration (IKCONFIG), and for a
// bzImage the compression of its payload, which ExtractVmlinux decompresses
// as a stream.
//
// Everything reads through an io.ReaderAt with bounded buffers: a kernel is
// untrusted input and may be large. Slipway boots x86_64 kernels; an arm64
// Image, a RISC-V Image, a 32-bit ARM zImage or an ELF of another machine
// is recognised and refused with an error naming its architecture.
package kernel

import (
	"errors"
	"fmt"
	"io"
)

// Format is how a kernel file is laid out.
type Format string

// Formats Inspect recognises as bootable.
const (
	FormatELF     Format = "elf"
	FormatBzImage Format = "bzimage"
)

// Compression is the compression of a bzImage's payload.
type Compression string

// Payload compressions.
const (
	CompressionNone  Compression = "none"
	CompressionGzip  Compression = "gzip"
	CompressionXZ    Compression = "xz"
	CompressionZstd  Compression = "zstd"
	CompressionLZ4   Compression = "lz4"
	CompressionLZMA  Compression = "lzma"
	CompressionBzip2 Compression = "bzip2"
	CompressionLZO   Compression = "lzo" // recognised, not decompressed
)

// ArchX86_64 is the one architecture Slipway boots.
const ArchX86_64 = "x86_64"

// Errors Inspect and ExtractVmlinux wrap; errors.Is tells them apart.
var (
	// ErrNotKernel: no ELF kernel, bzImage or other kernel header.
	ErrNotKernel = errors.New("not a kernel")
	// ErrTruncated: the file ends before what its header describes.
	ErrTruncated = errors.New("truncated kernel")
	// ErrArch: a kernel for an architecture other than x86_64 (an *ArchError).
	ErrArch = errors.New("unsupported architecture")
	// ErrCompression: a payload Slipway cannot decompress, or that does not
	// decompress to what its header says.
	ErrCompression = errors.New("bad kernel payload")
)

// ArchError is a kernel for another architecture.
type ArchError struct {
	Arch string // aarch64, riscv64, arm, i386, …
	What string // what was recognised: "arm64 Image", "ELF vmlinux", …
}

func (e *ArchError) Error() string {
	return fmt.Sprintf("a kernel for %s (%s): Slipway boots %s kernels only", e.Arch, e.What, ArchX86_64)
}

// Unwrap makes errors.Is(err, ErrArch) true.
func (e *ArchError) Unwrap() error { return ErrArch }

// Facts are what Inspect found.
type Facts struct {
	Format Format `json:"format"`
	Arch   string `json:"arch"`
	// Version is the kernel release ("6.1.0-56-amd64"); Banner the whole
	// version string it came from.
	Version string `json:"version"`
	Banner  string `json:"banner,omitempty"`
	// Compression of a bzImage's payload; empty for an ELF.
	Compression Compression `json:"compression,omitempty"`
	// PVH: the ELF has the XEN_ELFNOTE_PHYS32_ENTRY note, PVHEntry is its
	// value. A bzImage reports false: its payload's vmlinux may have it
	// (ExtractVmlinux, then Inspect that).
	PVH      bool   `json:"pvh"`
	PVHEntry uint64 `json:"pvh_entry,omitempty"`
	// Firecracker: the file fits Firecracker's loader (an uncompressed
	// x86_64 ELF); FirecrackerReason says why not when it does not.
	Firecracker       bool   `json:"firecracker"`
	FirecrackerReason string `json:"firecracker_reason,omitempty"`
	// Config: the kernel embeds its configuration (IKCONFIG), readable
	// with ConfigText. Only known for an ELF (a bzImage's is compressed
	// inside the payload).
	Config bool  `json:"config"`
	Size   int64 `json:"size"`

	// BootProtocol is a bzImage's boot protocol version ("2.15").
	BootProtocol string `json:"boot_protocol,omitempty"`
	// PayloadOffset and PayloadLength locate a bzImage's compressed
	// payload in the file.
	PayloadOffset int64 `json:"payload_offset,omitempty"`
	PayloadLength int64 `json:"payload_length,omitempty"`
	// ConfigOffset and ConfigLength locate the gzip'd IKCONFIG data.
	ConfigOffset int64 `json:"config_offset,omitempty"`
	ConfigLength int64 `json:"config_length,omitempty"`
}

// headerSize is how much of the file Inspect reads first to recognise it.
const headerSize = 4096

// Inspect examines the kernel file r of size bytes. Kernels of other
// architectures are recognised and refused: the error is an *ArchError and
// the Facts say what was found.
func Inspect(r io.ReaderAt, size int64) (Facts, error) {
	f := Facts{Size: size}
	head := make([]byte, min(size, headerSize))
	if _, err := r.ReadAt(head, 0); err != nil && !errors.Is(err, io.EOF) {
		return f, fmt.Errorf("read the kernel's header: %w", err)
	}
	switch {
	case isELF(head):
		return inspectELF(r, size, f)
	case isBzImage(head):
		return inspectBzImage(r, size, head, f)
	}
	if ae := otherImage(head); ae != nil {
		f.Arch = ae.Arch
		return f, ae
	}
	return f, fmt.Errorf("%w: no ELF, bzImage or kernel Image header (the file starts with %s)", ErrNotKernel, hexStart(head))
}

// hexStart shows the first bytes of a file in errors.
func hexStart(b []byte) string {
	if len(b) == 0 {
		return "nothing: it is empty"
	}
	return fmt.Sprintf("% x", b[:min(len(b), 8)])
}
