package inspect

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
)

// VMDK sparse extent header (little-endian), after the 4-byte "KDMV" magic:
// version@4 flags@8 capacity@12 grainSize@20 descriptorOffset@28
// descriptorSize@36 numGTEsPerGT@44 rgdOffset@48 gdOffset@56 overHead@64,
// all sizes in 512-byte sectors (layout as in QEMU's block/vmdk.c and
// oslo.utils' VMDKInspector).
const (
	vmdkGDAtEnd      = ^uint64(0)
	vmdkMaxDescBytes = 1<<20 - 1 // qemu reads at most 1 MiB of descriptor
	sector           = 512
)

var (
	vmdkExtentRE  = regexp.MustCompile(`^(?i)(rw|rdonly|noaccess)\s+(\d+)\s+(\S+)(?:\s+"([^"]*)")?(?:\s+(\d+))?\s*$`)
	vmdkKeyRE     = regexp.MustCompile(`^([A-Za-z0-9_.]+)\s*=\s*(.*)$`)
	vmdkTypesOK   = map[string]bool{"monolithicsparse": true, "streamoptimized": true}
	vmdkNoParents = "ffffffff"
)

func parseVMDK(s *src, rep *Report) error {
	h, err := s.read(VMDK, "sparse header", 0, sector)
	if err != nil {
		return err
	}
	version := le.Uint32(h[4:])
	if version < 1 || version > 3 {
		return refuse(VMDK, ErrUnsupported, "vmdk sparse header version %d is not supported", version)
	}
	capacity, descOff, descSize := le.Uint64(h[12:]), le.Uint64(h[28:]), le.Uint64(h[36:])
	if capacity == 0 {
		// qemu then treats the embedded descriptor as a descriptor file and
		// opens the extents it names.
		return refuse(VMDK, ErrExternalReference, "vmdk sparse header has capacity 0, which makes qemu open the extents its descriptor names; refused")
	}
	if le.Uint64(h[56:]) == vmdkGDAtEnd {
		if capacity, err = vmdkFooterCapacity(s, descOff, descSize); err != nil {
			return err
		}
	}
	if capacity > (1<<63-1)/sector {
		return s.checkSize(VMDK, ^uint64(0))
	}
	if err := s.checkSize(VMDK, capacity*sector); err != nil {
		return err
	}
	createType, err := vmdkDescriptor(s, descOff, descSize)
	if err != nil {
		return err
	}
	rep.VirtualSize = int64(capacity * sector)
	rep.Details["create_type"] = createType
	rep.Details["version"] = strconv.Itoa(int(version))
	return nil
}

// vmdkFooterCapacity reads the footer that streamOptimized images written in
// one pass carry (qemu: the footer takes precedence over the header) and
// returns its capacity. Its descriptor location must match the header's, so
// the descriptor checked is the one qemu uses.
func vmdkFooterCapacity(s *src, descOff, descSize uint64) (uint64, error) {
	if s.size < 3*sector {
		return 0, refuse(VMDK, ErrTruncated, "vmdk footer is missing: the file is truncated")
	}
	f, err := s.read(VMDK, "footer", s.size-3*sector, 3*sector)
	if err != nil {
		return 0, err
	}
	marker, hdr, eos := f[:sector], f[sector:2*sector], f[2*sector:]
	if le.Uint32(marker[8:]) != 0 || le.Uint32(marker[12:]) != 3 || !bytes.HasPrefix(hdr, []byte("KDMV")) ||
		le.Uint64(eos) != 0 || le.Uint32(eos[8:]) != 0 || le.Uint32(eos[12:]) != 0 {
		return 0, refuse(VMDK, ErrMalformed, "vmdk footer is invalid")
	}
	if le.Uint64(hdr[28:]) != descOff || le.Uint64(hdr[36:]) != descSize {
		return 0, refuse(VMDK, ErrMalformed, "vmdk footer and header disagree on where the descriptor is")
	}
	c := le.Uint64(hdr[12:])
	if c == 0 {
		return 0, refuse(VMDK, ErrExternalReference, "vmdk footer has capacity 0, which makes qemu open the extents its descriptor names; refused")
	}
	return c, nil
}

// vmdkDescriptor checks the embedded descriptor and returns its createType.
func vmdkDescriptor(s *src, descOff, descSize uint64) (string, error) {
	if descOff == 0 || descSize == 0 {
		return "", refuse(VMDK, ErrMalformed, "vmdk has no embedded descriptor")
	}
	if descSize > vmdkMaxDescBytes/sector+1 || descOff > uint64(s.size)/sector {
		return "", refuse(VMDK, ErrTruncated, "vmdk descriptor (sector %d, %d sectors) lies beyond the end of the file or exceeds 1 MiB", descOff, descSize)
	}
	n := min(descSize*sector, vmdkMaxDescBytes)
	d, err := s.read(VMDK, "descriptor", int64(descOff*sector), int64(n))
	if err != nil {
		return "", err
	}
	if i := bytes.IndexByte(d, 0); i >= 0 {
		d = d[:i]
	}
	return checkVMDKDescriptor(string(d))
}

// checkVMDKDescriptor parses descriptor text line by line and refuses
// anything it does not understand, any parent and any extent but a single
// SPARSE extent stored in this very file.
func checkVMDKDescriptor(text string) (string, error) {
	createType := ""
	extents := 0
	seen := map[string]bool{}
	for _, raw := range strings.Split(text, "\n") {
		line := strings.TrimSpace(raw)
		if err := checkQemuKeys(line, seen); err != nil {
			return "", err
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if m := vmdkExtentRE.FindStringSubmatch(line); m != nil {
			extents++
			if err := checkVMDKExtent(line, m, extents); err != nil {
				return "", err
			}
			continue
		}
		m := vmdkKeyRE.FindStringSubmatch(line)
		if m == nil {
			return "", refuse(VMDK, ErrMalformed, "vmdk descriptor has an unrecognised line %q", clip(line))
		}
		key, val := strings.ToLower(m[1]), strings.Trim(strings.TrimSpace(m[2]), `"`)
		switch {
		case strings.HasPrefix(key, "ddb."):
		case key == "createtype":
			createType = val
			if !vmdkTypesOK[strings.ToLower(val)] {
				return "", refuse(VMDK, ErrUnsupported, "vmdk createType %q is refused: only monolithicSparse and streamOptimized are accepted", clip(val))
			}
		case key == "parentcid":
			if strings.ToLower(val) != vmdkNoParents {
				return "", refuse(VMDK, ErrBackingFile, "vmdk has a parent disk (parentCID=%s); parent disks are not allowed", clip(val))
			}
		case key == "parentfilenamehint":
			return "", refuse(VMDK, ErrBackingFile, "vmdk names a parent disk %q; parent disks are not allowed", clip(val))
		}
	}
	if createType == "" {
		return "", refuse(VMDK, ErrMalformed, "vmdk descriptor has no createType")
	}
	if extents != 1 {
		return "", refuse(VMDK, ErrMalformed, "vmdk descriptor has %d extents; a monolithic image has exactly one", extents)
	}
	return createType, nil
}

// vmdkQemuKeys are the descriptor keys qemu reads, and it finds each with
// strstr over the whole descriptor: in a comment, inside another key or
// value, wherever it first appears. qemu-img 7.2 takes
// `# parentFileNameHint="/etc/hostname"` as a backing file.
var vmdkQemuKeys = []string{"parentFileNameHint", "parentCID", "createType", "CID"}

// checkQemuKeys refuses a line that mentions a key qemu reads anywhere but
// as its own key (exactly spelt, once per descriptor), so that qemu and
// this parser read the same descriptor.
func checkQemuKeys(line string, seen map[string]bool) error {
	rest := line
	if m := vmdkKeyRE.FindStringSubmatch(line); m != nil && !strings.HasPrefix(line, "#") {
		for _, k := range vmdkQemuKeys {
			if strings.EqualFold(m[1], k) {
				if m[1] != k || seen[k] {
					return refuse(VMDK, ErrMalformed, "vmdk descriptor line %q: the key %s must appear once, spelt exactly so", clip(line), k)
				}
				seen[k] = true
				rest = m[2]
			}
		}
	}
	for _, k := range vmdkQemuKeys {
		if strings.Contains(rest, k) {
			return refuse(VMDK, ErrBackingFile, "vmdk descriptor line %q mentions %s outside its own key line: qemu reads that key wherever it appears", clip(line), k)
		}
	}
	return nil
}

func checkVMDKExtent(line string, m []string, n int) error {
	typ, name := strings.ToUpper(m[3]), m[4]
	if n > 1 || typ != "SPARSE" || name == "" || strings.ContainsAny(name, `/\:`) || name == "." || name == ".." {
		return refuse(VMDK, ErrExternalReference, "vmdk extent %q refers to a file other than the image itself; only a single SPARSE extent in the image is allowed", clip(line))
	}
	return nil
}

// isVMDKText recognises a VMDK text descriptor file, which only names other
// files that hold the data.
func isVMDKText(head []byte) bool {
	t := bytes.TrimLeft(head, "\ufeff \t\r\n")
	return bytes.HasPrefix(t, []byte("# Disk DescriptorFile")) ||
		(bytes.Contains(head, []byte("createType")) && bytes.Contains(head, []byte("version=")) && bytes.IndexByte(head, 0) < 0 && !bytes.HasPrefix(head, []byte("KDMV")))
}

func refuseVMDKText(s *src) error {
	b, err := s.peek(0, 64<<10)
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if vmdkExtentRE.MatchString(line) {
			return refuse(VMDK, ErrExternalReference, "vmdk text descriptor files are refused: extent %q names a file outside the image", clip(line))
		}
	}
	return refuse(VMDK, ErrExternalReference, "vmdk text descriptor files are refused: their extents name other files")
}

// clip bounds text quoted from an untrusted file in messages.
func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
