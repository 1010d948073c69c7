package kernel

import (
	"bytes"
	"encoding/binary"
)

// otherImage recognises the raw kernel images of other architectures by
// their documented header magic, so they are refused by name instead of as
// "not a kernel".
func otherImage(head []byte) *ArchError {
	le32 := func(off int) uint32 {
		if len(head) < off+4 {
			return 0
		}
		return binary.LittleEndian.Uint32(head[off:])
	}
	switch {
	// Documentation/arch/arm64/booting.rst: magic "ARM\x64" at 0x38.
	case len(head) >= 0x3c && bytes.Equal(head[0x38:0x3c], []byte("ARM\x64")):
		return &ArchError{Arch: "aarch64", What: "arm64 Image"}
	// Documentation/arch/riscv/boot-image-header.rst: magic2 "RSC\x05" at 0x38
	// (magic "RISCV\0\0\0" at 0x30 on older headers).
	case len(head) >= 0x3c && bytes.Equal(head[0x38:0x3c], []byte("RSC\x05")),
		len(head) >= 0x38 && bytes.Equal(head[0x30:0x38], []byte("RISCV\x00\x00\x00")):
		return &ArchError{Arch: "riscv64", What: "RISC-V Image"}
	// arch/arm/boot/compressed/head.S: zImage magic 0x016f2818 at 0x24.
	case le32(0x24) == 0x016f2818:
		return &ArchError{Arch: "arm", What: "ARM zImage"}
	// drivers/firmware/efi/libstub/zboot-header.S: "zimg" at 4, the
	// compressed EFI image arm64, RISC-V and LoongArch use.
	case len(head) >= 8 && bytes.Equal(head[4:8], []byte("zimg")):
		return &ArchError{Arch: "aarch64, riscv64 or loongarch64", What: "EFI zboot image"}
	}
	return nil
}
