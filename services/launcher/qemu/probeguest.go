package qemu

import (
	"encoding/binary"
	"fmt"
)

// The probe guest is a 64 KiB firmware image given to QEMU as -bios. It runs
// from the reset vector with no BIOS at all and walks the path every Linux
// guest walks: real mode → protected mode (a GDT, a far jump) → paging with
// PAE, EFER.LME set through wrmsr → long mode (a far jump into a 64-bit code
// segment). Only there does it write its line to the first serial port and
// halt. A real-mode loop printing to the UART is not enough: on nested KVM
// hosts we have seen real-mode code print while the far jump into protected
// mode spins for ever, which is exactly how a Linux guest hangs there.
//
// The machine code is written out below byte by byte, with the assembly beside
// each instruction; the firmware is mapped at 0xFFFF0000 (its last 16 bytes
// hold the reset vector at 0xFFFFFFF0).

const (
	probeROMSize = 64 << 10
	probeROMBase = 0xFFFF0000 // where QEMU maps a 64 KiB -bios image

	probeEntry32  = 0x0040 // protected-mode code, ROM offset
	probeGDT      = 0x0100 // GDT, ROM offset
	probeGDTR     = 0x0140 // lgdt operand (limit, base), ROM offset
	probeCode64   = 0x0200 // long-mode code, ROM offset (copied to probeRAM64)
	probeRAM64    = 0x8000 // where the long-mode code runs
	probeResetVec = 0xFFF0 // ROM offset of the reset vector

	selCode32 = 0x08
	selData   = 0x10
	selCode64 = 0x18
)

// probeROM returns the firmware image that prints line (which must end in a
// newline and be printable ASCII) from long mode on COM1.
func probeROM(line string) ([]byte, error) {
	for i := 0; i < len(line); i++ {
		c := line[i]
		if (c < 0x20 || c > 0x7e) && !(c == '\n' && i == len(line)-1) {
			return nil, fmt.Errorf("probe line: byte %d (%#x) is not printable ASCII", i, c)
		}
	}
	rom := make([]byte, probeROMSize)
	for i := range rom {
		rom[i] = 0xf4 // hlt: a stray jump stops rather than runs garbage
	}
	place := func(off int, code []byte, limit int) error {
		if off+len(code) > limit {
			return fmt.Errorf("probe firmware: %d bytes at %#x overrun %#x", len(code), off, limit)
		}
		copy(rom[off:], code)
		return nil
	}
	code64 := longModeCode(line)
	steps := []struct {
		off, limit int
		code       []byte
	}{
		{0, probeEntry32, realModeCode()},
		{probeEntry32, probeGDT, protectedModeCode(len(code64))},
		{probeGDT, probeGDTR, gdt()},
		{probeGDTR, probeCode64, le16x32(4*8-1, probeROMBase+probeGDT)},
		{probeCode64, probeResetVec, code64},
		{probeResetVec, probeROMSize, resetVector()},
	}
	for _, s := range steps {
		if err := place(s.off, s.code, s.limit); err != nil {
			return nil, err
		}
	}
	return rom, nil
}

// realModeCode runs first (CS base 0xFFFF0000, 16-bit): load the GDT, set
// CR0.PE and far-jump into the 32-bit code segment.
func realModeCode() []byte {
	var c []byte
	c = append(c, 0xfa)       // cli
	c = append(c, 0xfc)       // cld
	c = append(c, 0x2e, 0x66) // lgdt cs:[probeGDTR] (32-bit base)
	c = append(c, 0x0f, 0x01, 0x16)
	c = binary.LittleEndian.AppendUint16(c, probeGDTR)
	c = append(c, 0x0f, 0x20, 0xc0)       // mov eax, cr0
	c = append(c, 0x66, 0x83, 0xc8, 0x01) // or eax, 1 (PE)
	c = append(c, 0x0f, 0x22, 0xc0)       // mov cr0, eax
	c = append(c, 0x66, 0xea)             // jmp dword selCode32:probeROMBase+probeEntry32
	c = binary.LittleEndian.AppendUint32(c, probeROMBase+probeEntry32)
	return binary.LittleEndian.AppendUint16(c, selCode32)
}

// protectedModeCode builds identity-mapped page tables for the first 2 MiB and
// the last 2 MiB below 4 GiB (where this code runs), copies the long-mode code
// to RAM, enables PAE, EFER.LME and paging, and far-jumps into 64-bit code.
func protectedModeCode(code64Len int) []byte {
	var c []byte
	c = append(c, 0x66, 0xb8, selData, 0x00) // mov ax, selData
	c = append(c, 0x8e, 0xd8)                // mov ds, ax
	c = append(c, 0x8e, 0xc0)                // mov es, ax
	c = append(c, 0x8e, 0xd0)                // mov ss, ax
	movMem := func(addr, val uint32) {       // mov dword [addr], val
		c = append(c, 0xc7, 0x05)
		c = binary.LittleEndian.AppendUint32(c, addr)
		c = binary.LittleEndian.AppendUint32(c, val)
	}
	movMem(0x1000, 0x2003)     // PML4[0]  → PDPT at 0x2000 (present, writable)
	movMem(0x2000, 0x3003)     // PDPT[0]  → PD at 0x3000
	movMem(0x3000, 0x83)       // PD[0]    = 0 MiB, 2 MiB page
	movMem(0x2018, 0x4003)     // PDPT[3]  → PD at 0x4000
	movMem(0x4ff8, 0xffe00083) // PD[511]  = 0xFFE00000, 2 MiB page (this ROM)
	mov32 := func(op byte, v uint32) { c = binary.LittleEndian.AppendUint32(append(c, op), v) }
	mov32(0xbe, probeROMBase+probeCode64) // mov esi, code64 in ROM
	mov32(0xbf, probeRAM64)               // mov edi, probeRAM64
	mov32(0xb9, uint32(code64Len))        // mov ecx, len
	c = append(c, 0xf3, 0xa4)             // rep movsb
	c = append(c, 0x0f, 0x20, 0xe0)       // mov eax, cr4
	c = append(c, 0x83, 0xc8, 0x20)       // or eax, 0x20 (PAE)
	c = append(c, 0x0f, 0x22, 0xe0)       // mov cr4, eax
	mov32(0xb8, 0x1000)                   // mov eax, PML4
	c = append(c, 0x0f, 0x22, 0xd8)       // mov cr3, eax
	mov32(0xb9, 0xc0000080)               // mov ecx, IA32_EFER
	c = append(c, 0x0f, 0x32)             // rdmsr
	mov32(0x0d, 0x100)                    // or eax, LME
	c = append(c, 0x0f, 0x30)             // wrmsr
	c = append(c, 0x0f, 0x20, 0xc0)       // mov eax, cr0
	mov32(0x0d, 0x80000000)               // or eax, PG
	c = append(c, 0x0f, 0x22, 0xc0)       // mov cr0, eax
	c = append(c, 0xea)                   // jmp selCode64:probeRAM64
	c = binary.LittleEndian.AppendUint32(c, probeRAM64)
	return binary.LittleEndian.AppendUint16(c, selCode64)
}

// longModeCode writes line to COM1 (port 0x3F8) and halts for ever.
func longModeCode(line string) []byte {
	c := []byte{0x66, 0xba, 0xf8, 0x03} // mov dx, 0x3f8
	for i := 0; i < len(line); i++ {
		c = append(c, 0xb0, line[i], 0xee) // mov al, byte; out dx, al
	}
	return append(c, 0xfa, 0xf4, 0xeb, 0xfd) // cli; hlt; jmp hlt
}

// gdt is null, 32-bit code, data (both flat 4 GiB) and 64-bit code.
func gdt() []byte {
	var g []byte
	for _, d := range []uint64{0, 0x00cf9a000000ffff, 0x00cf92000000ffff, 0x00af9a000000ffff} {
		g = binary.LittleEndian.AppendUint64(g, d)
	}
	return g
}

// resetVector jumps from 0xFFF0 back to offset 0 of the same 64 KiB segment.
func resetVector() []byte {
	rel := uint16(0x10000 - (probeResetVec + 3)) // jmp near 0x0000 (wraps within the segment)
	return binary.LittleEndian.AppendUint16([]byte{0xe9}, rel)
}

func le16x32(a uint16, b uint32) []byte {
	return binary.LittleEndian.AppendUint32(binary.LittleEndian.AppendUint16(nil, a), b)
}
