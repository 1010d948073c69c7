package kernel

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

func isELF(b []byte) bool { return len(b) >= 4 && bytes.Equal(b[:4], []byte(elf.ELFMAG)) }

// xenNotePhys32Entry is XEN_ELFNOTE_PHYS32_ENTRY (include/xen/interface/elfnote.h):
// the 32-bit physical entry point of a PVH kernel, in a note named "Xen".
const xenNotePhys32Entry = 18

// maxNotes bounds how much note data is read from one segment or section.
const maxNotes = 1 << 20

// archOfMachine names an ELF machine the way uname -m does.
func archOfMachine(m elf.Machine, class elf.Class) string {
	switch m {
	case elf.EM_X86_64:
		return ArchX86_64
	case elf.EM_386:
		return "i386"
	case elf.EM_AARCH64:
		return "aarch64"
	case elf.EM_ARM:
		return "arm"
	case elf.EM_RISCV:
		if class == elf.ELFCLASS32 {
			return "riscv32"
		}
		return "riscv64"
	case elf.EM_PPC64:
		return "ppc64"
	case elf.EM_S390:
		return "s390x"
	case elf.EM_LOONGARCH:
		return "loongarch64"
	case elf.EM_MIPS:
		return "mips"
	}
	return fmt.Sprintf("ELF machine %d", uint16(m))
}

// inspectELF examines an ELF file: a kernel has the "Linux version" banner.
func inspectELF(r io.ReaderAt, size int64, f Facts) (Facts, error) {
	f.Format = FormatELF
	if end, ok := elfTablesEnd(r); ok && end > size {
		return f, fmt.Errorf("%w: truncated ELF: its header puts program or section headers up to byte %d, the file has %d bytes", ErrTruncated, end, size)
	}
	ef, err := elf.NewFile(io.NewSectionReader(r, 0, size))
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return f, fmt.Errorf("%w: truncated ELF: %v", ErrTruncated, err)
		}
		return f, fmt.Errorf("%w: malformed ELF: %v", ErrNotKernel, err)
	}
	f.Arch = archOfMachine(ef.Machine, ef.Class)
	found, err := scan(r, size)
	if err != nil {
		return f, err
	}
	if found.banner == "" {
		return f, fmt.Errorf("%w: an ELF %s file (%s) without a Linux version banner", ErrNotKernel, ef.Type, f.Arch)
	}
	f.Banner, f.Version = found.banner, releaseOf(found.banner, "Linux version ")
	if f.Arch != ArchX86_64 {
		return f, &ArchError{Arch: f.Arch, What: "ELF vmlinux"}
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_LOAD && int64(p.Off+p.Filesz) > size {
			return f, fmt.Errorf("%w: truncated ELF: a loadable segment ends at byte %d, the file has %d bytes", ErrTruncated, p.Off+p.Filesz, size)
		}
	}
	if found.configLen > 0 {
		f.Config, f.ConfigOffset, f.ConfigLength = true, found.configOff, found.configLen
	}
	f.PVHEntry, f.PVH, err = pvhEntry(ef)
	if err != nil {
		return f, err
	}
	f.Firecracker, f.FirecrackerReason = firecrackerFit(ef)
	return f, nil
}

// elfTablesEnd is where the program and section header tables end,
// according to the ELF header; false when the header is too short to say.
func elfTablesEnd(r io.ReaderAt) (int64, bool) {
	var h [64]byte
	if _, err := r.ReadAt(h[:], 0); err != nil {
		return 0, false
	}
	var bo binary.ByteOrder = binary.LittleEndian
	if h[elf.EI_DATA] == byte(elf.ELFDATA2MSB) {
		bo = binary.BigEndian
	}
	var phoff, shoff uint64
	var phent, phnum, shent, shnum uint16
	switch elf.Class(h[elf.EI_CLASS]) {
	case elf.ELFCLASS64:
		phoff, shoff = bo.Uint64(h[0x20:]), bo.Uint64(h[0x28:])
		phent, phnum, shent, shnum = bo.Uint16(h[0x36:]), bo.Uint16(h[0x38:]), bo.Uint16(h[0x3a:]), bo.Uint16(h[0x3c:])
	case elf.ELFCLASS32:
		phoff, shoff = uint64(bo.Uint32(h[0x1c:])), uint64(bo.Uint32(h[0x20:]))
		phent, phnum, shent, shnum = bo.Uint16(h[0x2a:]), bo.Uint16(h[0x2c:]), bo.Uint16(h[0x2e:]), bo.Uint16(h[0x30:])
	default:
		return 0, false
	}
	end := uint64(0)
	if phnum > 0 {
		end = phoff + uint64(phent)*uint64(phnum)
	}
	if shnum > 0 {
		end = max(end, shoff+uint64(shent)*uint64(shnum))
	}
	if end > 1<<62 {
		return 1 << 62, true
	}
	return int64(end), true
}

// pvhEntry looks for the Xen PHYS32_ENTRY note in the note segments, or in
// the note sections when there are no note segments.
func pvhEntry(ef *elf.File) (uint64, bool, error) {
	type noteSrc struct {
		r           io.ReaderAt
		size, align uint64
	}
	var srcs []noteSrc
	for _, p := range ef.Progs {
		if p.Type == elf.PT_NOTE {
			srcs = append(srcs, noteSrc{p, p.Filesz, p.Align})
		}
	}
	if len(srcs) == 0 {
		for _, s := range ef.Sections {
			if s.Type == elf.SHT_NOTE {
				srcs = append(srcs, noteSrc{s, s.Size, s.Addralign})
			}
		}
	}
	for _, src := range srcs {
		data := make([]byte, min(src.size, maxNotes))
		if _, err := src.r.ReadAt(data, 0); err != nil && !errors.Is(err, io.EOF) {
			return 0, false, fmt.Errorf("%w: truncated ELF: reading its notes: %v", ErrTruncated, err)
		}
		if entry, ok := findNote(data, ef.ByteOrder, src.align, "Xen", xenNotePhys32Entry); ok {
			return entry, true, nil
		}
	}
	return 0, false, nil
}

// findNote walks ELF notes (namesz, descsz, type, name, desc; name and desc
// padded to align, 4 unless 8) and returns the descriptor of the note
// name/typ as a number.
func findNote(data []byte, bo binary.ByteOrder, align uint64, name string, typ uint32) (uint64, bool) {
	if align != 8 {
		align = 4
	}
	pad := func(n uint64) uint64 { return (n + align - 1) &^ (align - 1) }
	for len(data) >= 12 {
		namesz, descsz, t := uint64(bo.Uint32(data)), uint64(bo.Uint32(data[4:])), bo.Uint32(data[8:])
		rest := data[12:]
		if pad(namesz) > uint64(len(rest)) || pad(namesz)+pad(descsz) > uint64(len(rest)) {
			return 0, false
		}
		n := string(bytes.TrimRight(rest[:namesz], "\x00"))
		desc := rest[pad(namesz) : pad(namesz)+descsz]
		if n == name && t == typ {
			switch len(desc) {
			case 4:
				return uint64(bo.Uint32(desc)), true
			case 8:
				return bo.Uint64(desc), true
			}
		}
		data = rest[pad(namesz)+pad(descsz):]
	}
	return 0, false
}

// firecrackerFit tells whether Firecracker's x86_64 loader takes the ELF:
// it loads a 64-bit executable vmlinux (not a bzImage, not a relocatable
// object).
func firecrackerFit(ef *elf.File) (bool, string) {
	switch {
	case ef.Class != elf.ELFCLASS64:
		return false, "a 32-bit ELF: Firecracker boots 64-bit x86_64 kernels"
	case ef.Type != elf.ET_EXEC:
		return false, fmt.Sprintf("an ELF of type %s: Firecracker loads an executable vmlinux (ET_EXEC)", ef.Type)
	case ef.Entry == 0:
		return false, "the ELF has no entry point"
	}
	return true, ""
}

// releaseOf is the kernel release in a version string: the first word
// after prefix ("Linux version 6.1.0-56-amd64 (…)" → "6.1.0-56-amd64").
func releaseOf(banner, prefix string) string {
	s := bytes.TrimPrefix([]byte(banner), []byte(prefix))
	if i := bytes.IndexAny(s, " \t\n"); i >= 0 {
		s = s[:i]
	}
	return string(s)
}
