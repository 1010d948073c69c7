// Package ovftest builds OVF packages for tests with the real tools:
// qemu-img makes each disk a streamOptimized VMDK (what VMware and
// VirtualBox export), the descriptor is a real OVF 1.0 envelope, the
// manifest holds the SHA-256 (or SHA-1) of each file, and tar packs them
// with the descriptor first, as DSP0243 wants an OVA.
package ovftest

import (
	"archive/tar"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// Package describes an OVF package to build.
type Package struct {
	// Name is the virtual system's name and the files' base name.
	Name string
	// Disks are raw (or any qemu-img readable) disk files, converted to
	// streamOptimized VMDKs <Name>-disk<N>.vmdk.
	Disks []string
	// CPUs, MemoryMiB, OSID and OSType describe the hardware and OS.
	CPUs      int
	MemoryMiB int
	OSID      int
	OSType    string
	// Manifest is "SHA256" (default), "SHA1" or "none".
	Manifest string
	// Descriptor, when set, replaces the generated descriptor (for hostile
	// packages); Files then are the extra files to pack as they are.
	Descriptor string
	// Edit changes the files in the directory before they are packed
	// (after the manifest is written: a tampered disk).
	Edit func(dir string)
}

// Built is a built package: its directory and the OVA.
type Built struct {
	Dir   string   // the .ovf, the disks and the .mf
	Files []string // in the OVA's order, the descriptor first
	OVA   string
}

// Build builds p under a temporary directory of t.
func Build(t testing.TB, p Package) Built {
	t.Helper()
	dir := t.TempDir()
	b := Built{Dir: dir}
	var disks []diskFile
	for i, src := range p.Disks {
		name := fmt.Sprintf("%s-disk%d.vmdk", p.Name, i+1)
		out := filepath.Join(dir, name)
		testenv.Exec(t, "qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", src, out)
		disks = append(disks, diskFile{name: name, size: fileSize(t, out), capacity: virtualSize(t, src)})
	}
	desc := p.Descriptor
	if desc == "" {
		desc = p.descriptor(disks)
	}
	ovfName := p.Name + ".ovf"
	write(t, filepath.Join(dir, ovfName), desc)
	b.Files = append(b.Files, ovfName)
	for _, d := range disks {
		b.Files = append(b.Files, d.name)
	}
	if p.Manifest != "none" {
		mf := p.Name + ".mf"
		write(t, filepath.Join(dir, mf), manifest(t, dir, b.Files, p.Manifest))
		b.Files = append(b.Files, mf)
	}
	if p.Edit != nil {
		p.Edit(dir)
	}
	b.OVA = filepath.Join(dir, p.Name+".ova")
	// GNU tar, in the order given: the descriptor first.
	testenv.Exec(t, "tar", append([]string{"--format=ustar", "-cf", b.OVA, "-C", dir}, b.Files...)...)
	return b
}

type diskFile struct {
	name           string
	size, capacity int64
}

// descriptor is an OVF 1.0 envelope as VMware's ovftool writes it.
func (p Package) descriptor(disks []diskFile) string {
	var refs, diskSec, items strings.Builder
	for i, d := range disks {
		fmt.Fprintf(&refs, "    <File ovf:href=\"%s\" ovf:id=\"file%d\" ovf:size=\"%d\"/>\n", d.name, i+1, d.size)
		fmt.Fprintf(&diskSec, "    <Disk ovf:capacity=\"%d\" ovf:capacityAllocationUnits=\"byte * 2^20\" ovf:diskId=\"vmdisk%d\" ovf:fileRef=\"file%d\" ovf:format=\"http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized\"/>\n",
			(d.capacity+(1<<20)-1)>>20, i+1, i+1)
		fmt.Fprintf(&items, `      <Item>
        <rasd:AddressOnParent>%d</rasd:AddressOnParent>
        <rasd:ElementName>Hard disk %d</rasd:ElementName>
        <rasd:HostResource>ovf:/disk/vmdisk%d</rasd:HostResource>
        <rasd:InstanceID>%d</rasd:InstanceID>
        <rasd:Parent>3</rasd:Parent>
        <rasd:ResourceType>17</rasd:ResourceType>
      </Item>
`, i, i+1, i+1, 10+i)
	}
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-0" xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:cim="http://schemas.dmtf.org/wbem/wscim/1/common" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1" xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData" xmlns:vmw="http://www.vmware.com/schema/ovf" xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <References>
%s  </References>
  <DiskSection>
    <Info>Virtual disk information</Info>
%s  </DiskSection>
  <NetworkSection>
    <Info>The list of logical networks</Info>
    <Network ovf:name="VM Network"><Description>The VM Network network</Description></Network>
  </NetworkSection>
  <VirtualSystem ovf:id="%s">
    <Info>A virtual machine</Info>
    <Name>%s</Name>
    <OperatingSystemSection ovf:id="%d" vmw:osType="%s">
      <Info>The kind of installed guest operating system</Info>
      <Description>%s</Description>
    </OperatingSystemSection>
    <VirtualHardwareSection>
      <Info>Virtual hardware requirements</Info>
      <System>
        <vssd:ElementName>Virtual Hardware Family</vssd:ElementName>
        <vssd:InstanceID>0</vssd:InstanceID>
        <vssd:VirtualSystemIdentifier>%s</vssd:VirtualSystemIdentifier>
        <vssd:VirtualSystemType>vmx-13</vssd:VirtualSystemType>
      </System>
      <Item>
        <rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits>
        <rasd:Description>Number of Virtual CPUs</rasd:Description>
        <rasd:ElementName>%d virtual CPU(s)</rasd:ElementName>
        <rasd:InstanceID>1</rasd:InstanceID>
        <rasd:ResourceType>3</rasd:ResourceType>
        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits>
        <rasd:Description>Memory Size</rasd:Description>
        <rasd:ElementName>%dMB of memory</rasd:ElementName>
        <rasd:InstanceID>2</rasd:InstanceID>
        <rasd:ResourceType>4</rasd:ResourceType>
        <rasd:VirtualQuantity>%d</rasd:VirtualQuantity>
      </Item>
      <Item>
        <rasd:Address>0</rasd:Address>
        <rasd:Description>SCSI Controller</rasd:Description>
        <rasd:ElementName>SCSI controller 0</rasd:ElementName>
        <rasd:InstanceID>3</rasd:InstanceID>
        <rasd:ResourceSubType>VirtualSCSI</rasd:ResourceSubType>
        <rasd:ResourceType>6</rasd:ResourceType>
      </Item>
%s    </VirtualHardwareSection>
  </VirtualSystem>
</Envelope>
`, refs.String(), diskSec.String(), p.Name, p.Name, p.OSID, p.OSType, p.OSType, p.Name, p.CPUs, p.CPUs, p.MemoryMiB, p.MemoryMiB, items.String())
}

// manifest is the .mf of files in dir.
func manifest(t testing.TB, dir string, files []string, algo string) string {
	t.Helper()
	if algo == "" {
		algo = "SHA256"
	}
	var b strings.Builder
	for _, f := range files {
		var h hash.Hash = sha256.New()
		if algo == "SHA1" {
			h = sha1.New()
		}
		in, err := os.Open(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(h, in)
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&b, "%s(%s)= %s\n", algo, f, hex.EncodeToString(h.Sum(nil)))
	}
	return b.String()
}

// Tar writes an OVA of the given entries (name → content) in order, with
// names as they are: for hostile packages tar would not write.
func Tar(t testing.TB, path string, entries ...Entry) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tw := tar.NewWriter(f)
	for _, e := range entries {
		hdr := &tar.Header{Name: e.Name, Mode: 0o644, Size: int64(len(e.Data)), Typeflag: tar.TypeReg}
		if e.Link != "" {
			hdr = &tar.Header{Name: e.Name, Mode: 0o777, Typeflag: tar.TypeSymlink, Linkname: e.Link}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(e.Data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// Entry is a file of Tar: Link makes it a symbolic link.
type Entry struct {
	Name string
	Data []byte
	Link string
}

// Descriptor is a minimal OVF descriptor of one disk file href of
// capacity bytes, for hostile packages.
func Descriptor(href string, capacity int64) string {
	return fmt.Sprintf(`<?xml version="1.0"?>
<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1" xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1">
  <References><File ovf:href="%s" ovf:id="file1"/></References>
  <DiskSection><Info>disks</Info><Disk ovf:capacity="%d" ovf:diskId="vmdisk1" ovf:fileRef="file1"/></DiskSection>
  <VirtualSystem ovf:id="hostile"><Info>vm</Info><Name>hostile</Name></VirtualSystem>
</Envelope>
`, href, capacity)
}

func write(t testing.TB, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

func fileSize(t testing.TB, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// virtualSize is what qemu-img says of a disk's virtual size.
func virtualSize(t testing.TB, path string) int64 {
	t.Helper()
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal([]byte(testenv.Exec(t, "qemu-img", "info", "--output=json", path)), &info); err != nil {
		t.Fatal(err)
	}
	return info.VirtualSize
}

// Hostile descriptors every layer's tests feed: entity declarations (a
// billion-laughs expansion, an external entity) that must never be
// expanded.
const (
	BillionLaughs = `<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;"><!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>
<Envelope><VirtualSystem><Name>&c;</Name></VirtualSystem></Envelope>`
	ExternalEntity = `<?xml version="1.0"?><!DOCTYPE Envelope [<!ENTITY x SYSTEM "file:///etc/passwd">]><Envelope><VirtualSystem><Name>&x;</Name></VirtualSystem></Envelope>`
)

// ManyDisks is Descriptor with n disks, all of file href.
func ManyDisks(href string, n int) string {
	var many strings.Builder
	for i := range n {
		fmt.Fprintf(&many, `<Disk ovf:capacity="1" ovf:diskId="d%d" ovf:fileRef="file1"/>`, i)
	}
	return strings.Replace(Descriptor(href, 1), `<Disk ovf:capacity="1" ovf:diskId="vmdisk1" ovf:fileRef="file1"/>`, many.String(), 1)
}

// Corrupt is a Package.Edit that changes one byte of file name at
// offset, after the manifest was written. It inverts the byte: writing a
// fixed value would leave the file as it was whenever the byte already
// held it (1 run in 256 with random disks).
func Corrupt(t testing.TB, name string, offset int64) func(dir string) {
	return func(dir string) {
		f, err := os.OpenFile(filepath.Join(dir, name), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, offset); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		if _, err := f.WriteAt(b, offset); err != nil {
			t.Fatal(err)
		}
	}
}
