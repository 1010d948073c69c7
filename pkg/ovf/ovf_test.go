package ovf_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/ovf"
)

// Descriptor builds an OVF 1.x descriptor with the given References,
// DiskSection and hardware items.
func descriptor(files, disks, items string) string {
	return `<?xml version="1.0" encoding="UTF-8"?>
<Envelope vmw:buildId="build-1" xmlns="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:ovf="http://schemas.dmtf.org/ovf/envelope/1"
  xmlns:rasd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
  xmlns:vssd="http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
  xmlns:vmw="http://www.vmware.com/schema/ovf">
  <References>` + files + `</References>
  <DiskSection><Info>Virtual disks</Info>` + disks + `</DiskSection>
  <VirtualSystem ovf:id="vm1">
    <Info>A virtual machine</Info>
    <Name>web-01</Name>
    <OperatingSystemSection ovf:id="96" vmw:osType="debian12_64Guest"><Info>OS</Info><Description>Debian GNU/Linux 12 (64-bit)</Description></OperatingSystemSection>
    <VirtualHardwareSection><Info>hw</Info>` + items + `</VirtualHardwareSection>
  </VirtualSystem>
</Envelope>`
}

const (
	twoFiles = `<File ovf:href="web-disk1.vmdk" ovf:id="file1" ovf:size="1024"/><File ovf:href="web-disk2.vmdk" ovf:id="file2" ovf:compression="gzip"/>`
	twoDisks = `<Disk ovf:capacity="2" ovf:capacityAllocationUnits="byte * 2^30" ovf:diskId="vmdisk1" ovf:fileRef="file1" ovf:format="http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"/>
<Disk ovf:capacity="67108864" ovf:diskId="vmdisk2" ovf:fileRef="file2"/>`
	hwItems = `<Item><rasd:AllocationUnits>hertz * 10^6</rasd:AllocationUnits><rasd:InstanceID>1</rasd:InstanceID><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>2</rasd:VirtualQuantity></Item>
<Item><rasd:AllocationUnits>byte * 2^20</rasd:AllocationUnits><rasd:InstanceID>2</rasd:InstanceID><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>1536</rasd:VirtualQuantity></Item>
<Item><rasd:HostResource>ovf:/disk/vmdisk1</rasd:HostResource><rasd:InstanceID>3</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>
<Item><rasd:HostResource>ovf:/disk/vmdisk2</rasd:HostResource><rasd:InstanceID>4</rasd:InstanceID><rasd:ResourceType>17</rasd:ResourceType></Item>`
)

func TestParseDescriptor(t *testing.T) {
	d, err := ovf.Parse(strings.NewReader(descriptor(twoFiles, twoDisks, hwItems)), ovf.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != "web-01" || d.OSID != 96 || d.OSType != "debian12_64Guest" || d.OSDescription != "Debian GNU/Linux 12 (64-bit)" {
		t.Errorf("system: %+v", d)
	}
	if d.CPUs != 2 || d.MemoryMiB != 1536 {
		t.Errorf("hardware: %d CPUs, %d MiB; want 2, 1536", d.CPUs, d.MemoryMiB)
	}
	if len(d.Disks) != 2 {
		t.Fatalf("disks: %+v", d.Disks)
	}
	d1, d2 := d.Disks[0], d.Disks[1]
	if d1.ID != "vmdisk1" || d1.Capacity != 2<<30 || d1.File.Href != "web-disk1.vmdk" || d1.File.Size != 1024 || !strings.HasSuffix(d1.Format, "#streamOptimized") {
		t.Errorf("disk 1: %+v", d1)
	}
	if d2.Capacity != 64<<20 || d2.File.Href != "web-disk2.vmdk" || d2.File.Size != -1 || d2.File.Compression != "gzip" {
		t.Errorf("disk 2: %+v", d2)
	}
}

func TestCapacityUnits(t *testing.T) {
	for _, c := range []struct {
		n, units string
		want     int64
	}{
		{"5", "", 5}, {"5", "byte", 5}, {"3", "byte * 2^20", 3 << 20}, {"3", "byte*2^30", 3 << 30},
		{"4", "byte * 1024", 4096}, {"2", "GigaBytes", 2 << 30}, {"7", "MB", 7 << 20}, {"1", "byte * 10^9", 1e9},
	} {
		got, err := ovf.Capacity(c.n, c.units)
		if err != nil || got != c.want {
			t.Errorf("Capacity(%q, %q) = %d, %v; want %d", c.n, c.units, got, err, c.want)
		}
	}
	for _, c := range [][2]string{{"${disk.size}", ""}, {"-1", ""}, {"0", ""}, {"1", "hertz"}, {"1", "byte * 2^99"}, {"9223372036854775807", "byte * 2^30"}, {"1", "byte * x"}} {
		if got, err := ovf.Capacity(c[0], c[1]); err == nil {
			t.Errorf("Capacity(%q, %q) = %d, want an error", c[0], c[1], got)
		}
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"disk1.vmdk", "web-01-disk1.vmdk", "a b.vmdk", "x..y"} {
		if err := ovf.CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "..", "../etc/passwd", "..disk", "/etc/passwd", "sub/disk.vmdk", `a\b`, "http://evil.example/disk.vmdk",
		"file:///etc/shadow", "C:disk", "-rf", "a\x00b", "a\nb", strings.Repeat("a", 300)} {
		if err := ovf.CheckName(bad); err == nil {
			t.Errorf("CheckName(%q) accepted it", bad)
		}
	}
}

// TestHostileDescriptors: each refused with a message naming the problem.
func TestHostileDescriptors(t *testing.T) {
	billion := `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<Envelope><VirtualSystem><Name>&lol9;</Name></VirtualSystem></Envelope>`
	external := `<?xml version="1.0"?>
<!DOCTYPE Envelope [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<Envelope><VirtualSystem><Name>&xxe;</Name></VirtualSystem></Envelope>`
	// Without the DOCTYPE, an undeclared entity is still not expanded.
	undeclared := strings.Replace(descriptor(twoFiles, twoDisks, hwItems), "<Name>web-01</Name>", "<Name>&xxe;</Name>", 1)
	var many strings.Builder
	for i := range 10000 {
		fmt.Fprintf(&many, `<Disk ovf:capacity="1" ovf:diskId="d%d" ovf:fileRef="file1"/>`, i)
	}
	oneFile := `<File ovf:href="disk1.vmdk" ovf:id="file1"/>`
	oneDisk := `<Disk ovf:capacity="1" ovf:diskId="d1" ovf:fileRef="file1"/>`
	cases := []struct{ name, doc, want string }{
		{"billion laughs", billion, "DOCTYPE"},
		{"external entity", external, "DOCTYPE"},
		{"undeclared entity", undeclared, "not well-formed"},
		{"dot-dot href", descriptor(`<File ovf:href="../../etc/shadow" ovf:id="file1"/>`, oneDisk, ""), `"../../etc/shadow" leaves the package`},
		{"path href", descriptor(`<File ovf:href="sub/disk1.vmdk" ovf:id="file1"/>`, oneDisk, ""), "is a path"},
		{"absolute href", descriptor(`<File ovf:href="/etc/shadow" ovf:id="file1"/>`, oneDisk, ""), "is a path"},
		{"external href", descriptor(`<File ovf:href="http://evil.example/disk1.vmdk" ovf:id="file1"/>`, oneDisk, ""), "is a path"},
		{"URL href without a slash", descriptor(`<File ovf:href="evil.example:80" ovf:id="file1"/>`, oneDisk, ""), "looks like a URL"},
		{"10000 disks", descriptor(oneFile, many.String(), ""), "lists 10000 disks, more than 16"},
		{"huge capacity", descriptor(oneFile, `<Disk ovf:capacity="100" ovf:capacityAllocationUnits="byte * 2^40" ovf:diskId="d1" ovf:fileRef="file1"/>`, ""), "is more than"},
		{"unknown fileRef", descriptor(oneFile, `<Disk ovf:capacity="1" ovf:diskId="d1" ovf:fileRef="nope"/>`, ""), `"nope" names no File`},
		{"no disk", descriptor(oneFile, "", ""), "no disk"},
		{"chunked", descriptor(`<File ovf:href="disk1.vmdk" ovf:id="file1" ovf:chunkSize="1000"/>`, oneDisk, ""), "chunked"},
		{"compression", descriptor(`<File ovf:href="disk1.vmdk" ovf:id="file1" ovf:compression="bzip2"/>`, oneDisk, ""), `ovf:compression "bzip2"`},
		{"disk item to nowhere", descriptor(oneFile, oneDisk, `<Item><rasd:HostResource>ovf:/disk/other</rasd:HostResource><rasd:ResourceType>17</rasd:ResourceType></Item>`), "names no Disk"},
		{"CPUs", descriptor(oneFile, oneDisk, `<Item><rasd:ResourceType>3</rasd:ResourceType><rasd:VirtualQuantity>100000</rasd:VirtualQuantity></Item>`), "CPU item"},
		{"memory", descriptor(oneFile, oneDisk, `<Item><rasd:AllocationUnits>byte * 2^40</rasd:AllocationUnits><rasd:ResourceType>4</rasd:ResourceType><rasd:VirtualQuantity>100000</rasd:VirtualQuantity></Item>`), "more than"},
		{"not an envelope", `<html/>`, "not Envelope"},
		{"too large", descriptor(oneFile, oneDisk, strings.Repeat("<!-- padding -->", 100000)), "larger than"},
		{"elements", descriptor(oneFile, oneDisk, strings.Repeat("<Item/>", 30000)), "elements"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ovf.Parse(strings.NewReader(c.doc), ovf.Limits{})
			if err == nil || !errors.Is(err, ovf.ErrInvalid) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, c.want)
			}
		})
	}
}

func TestManifest(t *testing.T) {
	sha1Empty := "da39a3ee5e6b4b0d3255bfef95601890afd80709"
	sha256Empty := "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	m, err := ovf.ParseManifest(strings.NewReader("SHA1(a.ovf)= " + sha1Empty + "\nSHA256(disk1.vmdk) = " + strings.ToUpper(sha256Empty) + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := ovf.NewHasher()
	empty := h.Sums()
	if err := m.Verify(map[string]map[string]string{"a.ovf": empty, "disk1.vmdk": empty}); err != nil {
		t.Errorf("verify: %v", err)
	}
	h.Write([]byte("x"))
	err = m.Verify(map[string]map[string]string{"a.ovf": empty, "disk1.vmdk": h.Sums()})
	if err == nil || !strings.Contains(err.Error(), "manifest mismatch for disk1.vmdk: SHA256 expected "+sha256Empty+", actual 2d711642") {
		t.Errorf("mismatch: %v", err)
	}
	err = m.Verify(map[string]map[string]string{"a.ovf": empty})
	if err == nil || !strings.Contains(err.Error(), "lists disk1.vmdk, which the package does not hold") {
		t.Errorf("missing: %v", err)
	}
	for _, bad := range []string{"MD5(a)= 00", "SHA1(../x)= " + sha1Empty, "SHA1(a)= 00", "SHA1(a)= " + sha1Empty + "\nSHA1(a)= " + sha1Empty} {
		if _, err := ovf.ParseManifest(strings.NewReader(bad)); err == nil {
			t.Errorf("ParseManifest(%q) accepted it", bad)
		}
	}
}
