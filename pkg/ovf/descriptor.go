package ovf

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Limits cap what a descriptor may hold. The zero value means the
// defaults below.
type Limits struct {
	// MaxBytes caps the descriptor's size (default 1 MiB).
	MaxBytes int64
	// MaxElements caps its XML elements (default 20000).
	MaxElements int
	// MaxFiles, MaxDisks and MaxItems cap References/File,
	// DiskSection/Disk and VirtualHardwareSection items (defaults 64, 16
	// and 1024).
	MaxFiles, MaxDisks, MaxItems int
	// MaxCapacity caps a disk's capacity in bytes (default 16 TiB).
	MaxCapacity int64
}

// Defaults of Limits.
const (
	DefaultMaxBytes    = 1 << 20
	DefaultMaxElements = 20000
	DefaultMaxFiles    = 64
	DefaultMaxDisks    = 16
	DefaultMaxItems    = 1024
	DefaultMaxCapacity = 16 << 40
	// MaxCPUs and MaxMemoryMiB bound what a descriptor's hardware may ask.
	MaxCPUs      = 1024
	MaxMemoryMiB = 16 << 20 // 16 TiB
)

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.MaxElements, DefaultMaxElements)
	def(&l.MaxFiles, DefaultMaxFiles)
	def(&l.MaxDisks, DefaultMaxDisks)
	def(&l.MaxItems, DefaultMaxItems)
	if l.MaxBytes <= 0 {
		l.MaxBytes = DefaultMaxBytes
	}
	if l.MaxCapacity <= 0 {
		l.MaxCapacity = DefaultMaxCapacity
	}
	return l
}

// ErrInvalid marks a descriptor or manifest that is refused.
var ErrInvalid = errors.New("invalid OVF package")

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// Descriptor is what Slipway uses of an OVF descriptor.
type Descriptor struct {
	// Name is the virtual system's Name, else its ovf:id.
	Name string
	// OSID is OperatingSystemSection's ovf:id (a CIM OS type number, -1
	// when absent); OSType its vmw:osType or ovf:osType; OSDescription its
	// Description.
	OSID          int
	OSType        string
	OSDescription string
	// CPUs and MemoryMiB are the virtual hardware's (0 when absent).
	CPUs      int
	MemoryMiB int64
	// Files are References/File in order; Disks are DiskSection/Disk in
	// order, each with its file.
	Files []File
	Disks []Disk
}

// File is a References/File.
type File struct {
	ID   string
	Href string // a plain file name (CheckName)
	// Size is ovf:size, -1 when absent.
	Size int64
	// Compression is ovf:compression: "" (identity) or "gzip".
	Compression string
}

// Disk is a DiskSection/Disk with a file (a disk without one, an empty
// disk to create, is refused: Slipway imports data).
type Disk struct {
	ID       string
	Capacity int64 // bytes
	File     File
	Format   string // ovf:format, a URL naming the format
}

// The XML model: elements by local name, whatever their namespace (OVF
// 1.x and 2.x differ in it), and attributes likewise.
type xmlEnvelope struct {
	References struct {
		Files []xmlFile `xml:"File"`
	} `xml:"References"`
	DiskSections  []xmlDiskSection  `xml:"DiskSection"`
	VirtualSystem *xmlVirtualSystem `xml:"VirtualSystem"`
	Collection    *struct{}         `xml:"VirtualSystemCollection"`
}

type xmlFile struct {
	ID          string `xml:"id,attr"`
	Href        string `xml:"href,attr"`
	Size        string `xml:"size,attr"`
	Compression string `xml:"compression,attr"`
	ChunkSize   string `xml:"chunkSize,attr"`
}

type xmlDiskSection struct {
	Disks []xmlDisk `xml:"Disk"`
}

type xmlDisk struct {
	DiskID   string `xml:"diskId,attr"`
	Capacity string `xml:"capacity,attr"`
	Units    string `xml:"capacityAllocationUnits,attr"`
	FileRef  string `xml:"fileRef,attr"`
	Format   string `xml:"format,attr"`
}

type xmlVirtualSystem struct {
	ID       string  `xml:"id,attr"`
	Name     string  `xml:"Name"`
	OSes     []xmlOS `xml:"OperatingSystemSection"`
	Hardware []struct {
		Items        []xmlItem `xml:"Item"`
		StorageItems []xmlItem `xml:"StorageItem"`
	} `xml:"VirtualHardwareSection"`
}

type xmlOS struct {
	ID          string     `xml:"id,attr"`
	Attrs       []xml.Attr `xml:",any,attr"`
	Description string     `xml:"Description"`
}

type xmlItem struct {
	ResourceType    string `xml:"ResourceType"`
	VirtualQuantity string `xml:"VirtualQuantity"`
	AllocationUnits string `xml:"AllocationUnits"`
	HostResource    string `xml:"HostResource"`
}

// CIM resource types of the items Slipway reads.
const (
	resourceCPU    = "3"
	resourceMemory = "4"
	resourceDisk   = "17"
)

// Parse reads a descriptor from r within lim.
func Parse(r io.Reader, lim Limits) (*Descriptor, error) {
	lim = lim.withDefaults()
	data, err := io.ReadAll(io.LimitReader(r, lim.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the OVF descriptor: %w", err)
	}
	if int64(len(data)) > lim.MaxBytes {
		return nil, invalid("the OVF descriptor is larger than %d bytes", lim.MaxBytes)
	}
	if err := scan(data, lim); err != nil {
		return nil, err
	}
	var env xmlEnvelope
	dec := newDecoder(data)
	if err := dec.Decode(&env); err != nil {
		return nil, invalid("the OVF descriptor is not well-formed XML: %v", err)
	}
	return env.descriptor(lim)
}

func newDecoder(data []byte) *xml.Decoder {
	dec := xml.NewDecoder(bytes.NewReader(data))
	dec.Strict = true
	dec.Entity = nil // only XML's five predefined entities
	return dec
}

// scan walks the tokens once before decoding: a DOCTYPE (where entities,
// internal or external, are declared) is refused, and so are too many
// elements.
func scan(data []byte, lim Limits) error {
	dec := newDecoder(data)
	elements, root := 0, ""
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return invalid("the OVF descriptor is not well-formed XML: %v", err)
		}
		switch t := tok.(type) {
		case xml.Directive:
			return invalid("the OVF descriptor has a DOCTYPE or another <!…> declaration: entities are not accepted")
		case xml.StartElement:
			if elements++; elements > lim.MaxElements {
				return invalid("the OVF descriptor has more than %d elements", lim.MaxElements)
			}
			if root == "" {
				root = t.Name.Local
			}
		}
	}
	if root != "Envelope" {
		return invalid("the OVF descriptor's root element is %q, not Envelope", root)
	}
	return nil
}

func (env *xmlEnvelope) descriptor(lim Limits) (*Descriptor, error) {
	if env.Collection != nil {
		return nil, invalid("the OVF package holds a VirtualSystemCollection: only one VirtualSystem is imported")
	}
	if env.VirtualSystem == nil {
		return nil, invalid("the OVF descriptor has no VirtualSystem")
	}
	d := &Descriptor{OSID: -1}
	files, err := env.files(lim)
	if err != nil {
		return nil, err
	}
	d.Files = files
	if d.Disks, err = env.disks(lim, files); err != nil {
		return nil, err
	}
	if err := env.VirtualSystem.read(d, lim); err != nil {
		return nil, err
	}
	return d, nil
}

func (env *xmlEnvelope) files(lim Limits) ([]File, error) {
	if n := len(env.References.Files); n > lim.MaxFiles {
		return nil, invalid("References lists %d files, more than %d", n, lim.MaxFiles)
	}
	var out []File
	seen := map[string]bool{}
	for _, f := range env.References.Files {
		if err := CheckName(f.Href); err != nil {
			return nil, invalid("File %q: ovf:href: %v", f.ID, err)
		}
		if f.ID == "" || seen[f.ID] {
			return nil, invalid("File %q: every File needs a unique ovf:id", f.Href)
		}
		seen[f.ID] = true
		if f.ChunkSize != "" {
			return nil, invalid("File %q is chunked (ovf:chunkSize): chunked files are not supported", f.Href)
		}
		file := File{ID: f.ID, Href: f.Href, Size: -1}
		switch f.Compression {
		case "", "identity":
		case "gzip":
			file.Compression = "gzip"
		default:
			return nil, invalid("File %q: ovf:compression %q is not identity or gzip", f.Href, f.Compression)
		}
		if f.Size != "" {
			n, err := strconv.ParseInt(f.Size, 10, 64)
			if err != nil || n < 0 {
				return nil, invalid("File %q: ovf:size %q is not a byte count", f.Href, f.Size)
			}
			file.Size = n
		}
		out = append(out, file)
	}
	return out, nil
}

func (env *xmlEnvelope) disks(lim Limits, files []File) ([]Disk, error) {
	count := 0
	for _, s := range env.DiskSections {
		count += len(s.Disks)
	}
	if count > lim.MaxDisks {
		return nil, invalid("DiskSection lists %d disks, more than %d", count, lim.MaxDisks)
	}
	if count == 0 {
		return nil, invalid("the OVF descriptor has no disk (DiskSection/Disk)")
	}
	byID := map[string]File{}
	for _, f := range files {
		byID[f.ID] = f
	}
	var out []Disk
	seen := map[string]bool{}
	for _, s := range env.DiskSections {
		for _, x := range s.Disks {
			if x.DiskID == "" || seen[x.DiskID] {
				return nil, invalid("Disk %q: every Disk needs a unique ovf:diskId", x.DiskID)
			}
			seen[x.DiskID] = true
			f, ok := byID[x.FileRef]
			if !ok {
				return nil, invalid("Disk %q: ovf:fileRef %q names no File of References (an empty disk to create is not imported)", x.DiskID, x.FileRef)
			}
			capacity, err := Capacity(x.Capacity, x.Units)
			if err != nil {
				return nil, invalid("Disk %q: %v", x.DiskID, err)
			}
			if capacity > lim.MaxCapacity {
				return nil, invalid("Disk %q: a capacity of %d bytes is more than %d", x.DiskID, capacity, lim.MaxCapacity)
			}
			out = append(out, Disk{ID: x.DiskID, Capacity: capacity, File: f, Format: x.Format})
		}
	}
	return out, nil
}

func (vs *xmlVirtualSystem) read(d *Descriptor, lim Limits) error {
	d.Name = strings.TrimSpace(vs.Name)
	if d.Name == "" {
		d.Name = vs.ID
	}
	if len(vs.OSes) > 0 {
		os := vs.OSes[0]
		d.OSDescription = strings.TrimSpace(os.Description)
		if os.ID != "" {
			id, err := strconv.Atoi(os.ID)
			if err != nil || id < 0 || id > 65535 {
				return invalid("OperatingSystemSection: ovf:id %q is not a CIM OS type number", os.ID)
			}
			d.OSID = id
		}
		for _, a := range os.Attrs {
			if a.Name.Local == "osType" {
				d.OSType = a.Value
			}
		}
	}
	var items []xmlItem
	for _, h := range vs.Hardware {
		items = append(append(items, h.Items...), h.StorageItems...)
	}
	if len(items) > lim.MaxItems {
		return invalid("VirtualHardwareSection has %d items, more than %d", len(items), lim.MaxItems)
	}
	disks := map[string]bool{}
	for _, dk := range d.Disks {
		disks[dk.ID] = true
	}
	for _, it := range items {
		if err := it.read(d, disks); err != nil {
			return err
		}
	}
	return nil
}

func (it xmlItem) read(d *Descriptor, disks map[string]bool) error {
	switch strings.TrimSpace(it.ResourceType) {
	case resourceCPU:
		n, err := strconv.Atoi(strings.TrimSpace(it.VirtualQuantity))
		if err != nil || n < 1 || n > MaxCPUs {
			return invalid("the CPU item's VirtualQuantity %q is not a count from 1 to %d", it.VirtualQuantity, MaxCPUs)
		}
		d.CPUs = n
	case resourceMemory:
		n, err := strconv.ParseInt(strings.TrimSpace(it.VirtualQuantity), 10, 64)
		if err != nil || n < 1 {
			return invalid("the memory item's VirtualQuantity %q is not a positive count", it.VirtualQuantity)
		}
		unit, err := units(it.AllocationUnits, 1<<20) // OVF's default for memory: MB
		if err != nil {
			return invalid("the memory item: %v", err)
		}
		if n > MaxMemoryMiB<<20/unit {
			return invalid("the memory item asks for more than %d MiB", MaxMemoryMiB)
		}
		d.MemoryMiB = max(1, n*unit>>20)
	case resourceDisk:
		id, ok := strings.CutPrefix(strings.TrimSpace(it.HostResource), "ovf:/disk/")
		if !ok || !disks[id] {
			return invalid("a disk item's HostResource %q names no Disk of DiskSection (ovf:/disk/<diskId>)", it.HostResource)
		}
	}
	return nil
}

// Capacity is a disk's capacity in bytes: ovf:capacity in units (its
// ovf:capacityAllocationUnits, bytes when absent).
func Capacity(capacity, unitText string) (int64, error) {
	n, err := strconv.ParseInt(strings.TrimSpace(capacity), 10, 64)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("ovf:capacity %q is not a positive count (property references like ${…} are not supported)", capacity)
	}
	unit, err := units(unitText, 1)
	if err != nil {
		return 0, err
	}
	if n > (1<<62)/unit {
		return 0, fmt.Errorf("ovf:capacity %s × %d bytes overflows", capacity, unit)
	}
	return n * unit, nil
}

// units parses a DMTF programmatic unit of bytes ("byte", "byte * 2^30",
// "byte * 1024") or one of the names older exporters write ("KB", "MB",
// "GB", "MegaBytes"…); "" is def.
func units(text string, def int64) (int64, error) {
	t := strings.ToLower(strings.Join(strings.Fields(text), ""))
	switch t {
	case "":
		return def, nil
	case "byte", "bytes", "b":
		return 1, nil
	case "kb", "kilobytes", "kib":
		return 1 << 10, nil
	case "mb", "megabytes", "mib":
		return 1 << 20, nil
	case "gb", "gigabytes", "gib":
		return 1 << 30, nil
	case "tb", "terabytes", "tib":
		return 1 << 40, nil
	}
	rest, ok := strings.CutPrefix(t, "byte*")
	if !ok {
		return 0, fmt.Errorf("allocation units %q are not bytes (byte * 2^N)", text)
	}
	if base, exp, ok := strings.Cut(rest, "^"); ok {
		b, err1 := strconv.Atoi(base)
		e, err2 := strconv.Atoi(exp)
		if err1 != nil || err2 != nil || b < 2 || e < 0 {
			return 0, fmt.Errorf("allocation units %q: want byte * <base>^<exponent>", text)
		}
		v := int64(1)
		for range e {
			if v > (1<<50)/int64(b) {
				return 0, fmt.Errorf("allocation units %q are too large", text)
			}
			v *= int64(b)
		}
		return v, nil
	}
	v, err := strconv.ParseInt(rest, 10, 64)
	if err != nil || v < 1 || v > 1<<50 {
		return 0, fmt.Errorf("allocation units %q: want byte * <n> or byte * <base>^<exponent>", text)
	}
	return v, nil
}
