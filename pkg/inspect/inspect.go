package inspect

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Report is what Inspect found out about an image.
type Report struct {
	Format      Format            // detected format
	VirtualSize int64             // size of the disk the guest sees, bytes
	FileSize    int64             // size of the file, bytes
	Details     map[string]string // format-specific facts (version, cluster size, subformat…)
}

// Limits bound what Inspect accepts.
type Limits struct {
	// MaxVirtualSize is the largest virtual size accepted; 0 means
	// DefaultMaxVirtualSize, a negative value means no limit.
	MaxVirtualSize int64
}

// DefaultMaxVirtualSize applies when Limits.MaxVirtualSize is 0, so a caller
// that forgets to set a limit still gets one.
const DefaultMaxVirtualSize int64 = 2 << 40 // 2 TiB

// InspectFile opens path and inspects it; see Inspect.
func InspectFile(path string, lim Limits) (Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("inspect: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return Report{}, fmt.Errorf("inspect: %w", err)
	}
	if !st.Mode().IsRegular() {
		return Report{}, refuse("", ErrUnsupported, "%s is not a regular file", path)
	}
	return Inspect(f, st.Size(), lim)
}

// Inspect detects the format of the image of the given size read through r
// and checks it is safe to hand to qemu-img. A refusal is a *RefusedError;
// any other error comes from reading r.
func Inspect(r io.ReaderAt, size int64, lim Limits) (Report, error) {
	if size <= 0 {
		return Report{}, refuse("", ErrEmpty, "the file is empty")
	}
	s := &src{r: r, size: size, maxVirtual: lim.MaxVirtualSize}
	if s.maxVirtual == 0 {
		s.maxVirtual = DefaultMaxVirtualSize
	}
	found, err := detect(s)
	if err != nil {
		return Report{}, err
	}
	if len(found) > 1 {
		names := make([]string, len(found))
		for i, f := range found {
			names[i] = string(f)
		}
		return Report{}, refuse("", ErrPolyglot, "file matches both %s: a file that is valid as two formats is refused",
			strings.Join(names, " and "))
	}
	format := Raw
	if len(found) == 1 {
		format = found[0]
	}
	rep := Report{Format: format, FileSize: size, VirtualSize: size, Details: map[string]string{}}
	if p := parsers[format]; p != nil {
		if err := p(s, &rep); err != nil {
			return Report{}, err
		}
	}
	if err := s.checkSize(rep.Format, uint64(rep.VirtualSize)); err != nil {
		return Report{}, err
	}
	return rep, nil
}

// parsers validate one format's headers and fill in the report.
var parsers = map[Format]func(*src, *Report) error{
	QCOW2: parseQCOW2,
	VMDK:  parseVMDK,
	VDI:   parseVDI,
	VHD:   parseVHD,
	VHDX:  parseVHDX,
	ISO:   parseISO,
	LUKS:  parseLUKS,
	QED: func(*src, *Report) error {
		return refuse(QED, ErrUnsupported, "QED is refused: it may reference backing files and qemu-img support is deprecated")
	},
}

// Check compares the detected format with the declared one (empty: not
// declared). An ISO may be declared raw, since qemu reads an ISO as raw data.
func Check(rep Report, declared Format) error {
	if declared == "" || declared == rep.Format {
		return nil
	}
	if declared == Raw && rep.Format == ISO {
		return nil
	}
	return refuse(rep.Format, ErrFormatMismatch, "declared %s but the file is %s", declared, rep.Format)
}

// Probes of the signature scan. Each looks at a fixed place; together they
// decide the format, and raw is claimed only when none matches.
const (
	isoDescStart = 0x8000 // ISO 9660 system area is the first 16 sectors of 2048 bytes
	vhdFooterLen = 512
)

var isoIDs = [][]byte{[]byte("CD001"), []byte("BEA01"), []byte("NSR02"), []byte("NSR03"), []byte("TEA01")}

// magics are the signatures at the very start of a file and the format
// each names; VDI's sits at 0x40, ISO 9660's at 32 KiB and a fixed VHD's in
// its footer (detect looks there too).
var magics = []struct {
	prefix string
	format Format
}{
	{"QFI\xfb", QCOW2},
	{"QED\x00", QED},
	{"KDMV", VMDK},
	{"vhdxfile", VHDX},
	{"LUKS\xba\xbe", LUKS},
	{"conectix", VHD},
}

// detect returns every format whose signature the file carries, sorted, or
// a refusal for signatures of formats Slipway does not accept at all.
func detect(s *src) ([]Format, error) {
	head, err := s.peek(0, 512)
	if err != nil {
		return nil, err
	}
	if err := refuseOtherFormats(s, head); err != nil {
		return nil, err
	}
	set := map[Format]bool{}
	for _, m := range magics {
		if bytes.HasPrefix(head, []byte(m.prefix)) {
			set[m.format] = true
			break
		}
	}
	if len(head) >= 0x44 && le.Uint32(head[0x40:]) == vdiMagic {
		set[VDI] = true
	}
	if s.size >= vhdFooterLen {
		tail, err := s.peek(s.size-vhdFooterLen, 8)
		if err != nil {
			return nil, err
		}
		if bytes.Equal(tail, []byte("conectix")) {
			set[VHD] = true
		}
	}
	for i := int64(0); i < 3; i++ {
		id, err := s.peek(isoDescStart+i*2048+1, 5)
		if err != nil {
			return nil, err
		}
		for _, want := range isoIDs {
			if bytes.Equal(id, want) {
				set[ISO] = true
			}
		}
	}
	if isVMDKText(head) {
		return nil, refuseVMDKText(s)
	}
	out := make([]Format, 0, len(set))
	for f := range set {
		out = append(out, f)
	}
	sort.Slice(out, func(i, j int) bool { return formatRank(out[i]) < formatRank(out[j]) })
	return out, nil
}

// refuseOtherFormats refuses images of formats qemu-img can read but Slipway
// does not accept, so they are never mistaken for raw.
func refuseOtherFormats(s *src, head []byte) error {
	type sig struct {
		prefix, name string
	}
	for _, o := range []sig{
		{"COWD", "VMDK version 3 (COWD)"},
		{"WithoutFreeSpace", "Parallels"},
		{"WithouFreSpacExt", "Parallels"},
		{"Bochs Virtual HD Image", "Bochs"},
		{"#!/bin/sh\n#V2.0 Format", "cloop"},
	} {
		if bytes.HasPrefix(head, []byte(o.prefix)) {
			return refuse("", ErrUnsupported, "%s images are not supported", o.name)
		}
	}
	if bytes.HasPrefix(head, []byte("QFI\xfb")) && len(head) >= 8 && be.Uint32(head[4:]) == 1 {
		return refuse("", ErrUnsupported, "qcow version 1 images are not supported (only qcow2)")
	}
	if s.size >= 512 {
		koly, err := s.peek(s.size-512, 4)
		if err != nil {
			return err
		}
		if bytes.Equal(koly, []byte("koly")) {
			return refuse("", ErrUnsupported, "Apple DMG images are not supported")
		}
	}
	return nil
}

func formatRank(f Format) int {
	for i, g := range Formats {
		if g == f {
			return i
		}
	}
	return len(Formats)
}
