package vmtemplate

import (
	"reflect"
	"strings"
	"testing"
)

func id(n int64) *int64 { return &n }

func TestParseFull(t *testing.T) {
	text := `NAME = "web"
CPU = 0.5
VCPU = 2
MEMORY = 512
DISK = [ IMAGE_ID = 3, TARGET = vda ]
DISK = [ IMAGE = "data disk", IMAGE_UNAME = "oneadmin", DEV_PREFIX = sd, READONLY = YES ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=7]",
       INITRD_DS = "$FILE[IMAGE=\"initrd 6.1\", IMAGE_UNAME=\"oneadmin\"]",
       ROOT = "/dev/vda1", KERNEL_CMD = "quiet loglevel=3", BOOT_MODE = PVH ]
CONTEXT = [ TOKEN = "it's here", HOSTNAME = web1,
            FILES_DS = "$FILE[IMAGE_ID=9] $FILE[IMAGE=\"motd\"]" ]
NIC = [ MODEL = virtio, MAC = "02:00:0A:00:00:01", NETWORK = "private" ]
RAW = [ TYPE = kvm, DATA = "-smbios type=1" ]
GRAPHICS = [ TYPE = vnc ]
`
	s, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "web" || s.CPU != 0.5 || s.VCPU != 2 || s.MemoryMiB != 512 || s.Text != text {
		t.Fatalf("scalars: %+v", s)
	}
	if len(s.Disks) != 2 {
		t.Fatalf("disks: %+v", s.Disks)
	}
	d0, d1 := s.Disks[0], s.Disks[1]
	if *d0.ImageID != 3 || d0.Target != "vda" || d0.ReadOnly || d0.Image != "" {
		t.Errorf("disk 1: %+v", d0)
	}
	if d1.ImageID != nil || d1.Image != "data disk" || d1.ImageUname != "oneadmin" || d1.DevPrefix != "sd" || !d1.ReadOnly {
		t.Errorf("disk 2: %+v", d1)
	}
	wantOS := OS{KernelDS: FileRef{ImageID: id(7)}, InitrdDS: FileRef{Image: "initrd 6.1", ImageUname: "oneadmin"},
		Root: "vda1", KernelCmd: "quiet loglevel=3", BootMode: BootPVH}
	if !reflect.DeepEqual(s.OS, wantOS) {
		t.Errorf("OS = %+v, want %+v", s.OS, wantOS)
	}
	wantVars := []Var{{"HOSTNAME", "web1"}, {"TOKEN", "it's here"}}
	if !reflect.DeepEqual(s.Context.Vars, wantVars) {
		t.Errorf("context vars = %+v", s.Context.Vars)
	}
	if v, ok := s.Context.Get("TOKEN"); !ok || v != "it's here" {
		t.Errorf("Get(TOKEN) = %q %v", v, ok)
	}
	wantFiles := []FileRef{{ImageID: id(9)}, {Image: "motd"}}
	if !reflect.DeepEqual(s.Context.FilesDS, wantFiles) {
		t.Errorf("FILES_DS = %+v", s.Context.FilesDS)
	}
	if len(s.NICs) != 1 || s.NICs[0].MAC != "02:00:0a:00:00:01" || s.NICs[0].Model != "virtio" || s.NICs[0].Network != "private" {
		t.Errorf("NICs = %+v", s.NICs)
	}
	if s.Raw != "-smbios type=1" {
		t.Errorf("Raw = %q", s.Raw)
	}
}

func TestParseDefaults(t *testing.T) {
	s, err := Parse("DISK = [ IMAGE_ID = 0 ]\n")
	if err != nil {
		t.Fatal(err)
	}
	if s.VCPU != 1 || s.MemoryMiB != 256 || s.OS.Root != "vda" || s.OS.BootMode != BootAuto || s.CPU != 0 {
		t.Fatalf("defaults: %+v", s)
	}
	if !s.OS.KernelDS.IsZero() || !s.OS.InitrdDS.IsZero() || len(s.Context.Vars) != 0 || s.Context.FilesDS != nil {
		t.Fatalf("absent OS/CONTEXT: %+v %+v", s.OS, s.Context)
	}
	if *s.Disks[0].ImageID != 0 {
		t.Fatalf("IMAGE_ID 0 lost: %+v", s.Disks[0])
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`DISK = [ IMAGE_ID = 1 ]` + "\n" + `DISK = [ IMAGE_ID = x ]`, `DISK 2: IMAGE_ID "x" is not a number`},
		{`DISK = [ TARGET = vda ]`, `DISK 1: needs IMAGE_ID or IMAGE`},
		{`DISK = [ IMAGE_ID = 1, IMAGE = "a" ]`, `DISK 1: give IMAGE_ID or IMAGE, not both`},
		{`DISK = [ IMAGE_ID = 1, IMAGE_UNAME = "a" ]`, `DISK 1: IMAGE_UNAME goes with IMAGE`},
		{`DISK = [ IMAGE_ID = 1, DEV_PREFIX = xvd ]`, `DISK 1: DEV_PREFIX "xvd" must be vd, sd or hd`},
		{`DISK = [ IMAGE_ID = 1, TARGET = vdaa ]`, `DISK 1: TARGET "vdaa" must be`},
		{`DISK = [ IMAGE_ID = 1, READONLY = maybe ]`, `DISK 1: READONLY "maybe" must be yes or no`},
		{`DISK = 3`, `DISK must be a vector`},
		{`MEMORY = 0`, `MEMORY must be a positive number of MiB`},
		{`MEMORY = 1.5G`, `MEMORY must be a positive number of MiB, not "1.5G"`},
		{`MEMORY = [ SIZE = 1 ]`, `MEMORY must be a single value`},
		{"MEMORY = 1\nMEMORY = 2", `MEMORY is given more than once`},
		{`CPU = -1`, `CPU must be a positive number`},
		{`VCPU = 0`, `VCPU must be a whole number from 1 to 255`},
		{`OS = [ KERNEL_DS = "/boot/vmlinuz" ]`, `OS: KERNEL_DS must be $FILE[IMAGE_ID=n] or $FILE[IMAGE=…]`},
		{`OS = [ INITRD_DS = "$FILE[IMAGE_ID=1] $FILE[IMAGE_ID=2]" ]`, `OS: INITRD_DS must be $FILE[IMAGE_ID=n]`},
		{`OS = [ KERNEL_DS = "$FILE[IMAGE_ID=abc]" ]`, `OS: KERNEL_DS must be`},
		{`OS = [ KERNEL = "/boot/vmlinuz" ]`, `OS: KERNEL (a path on the host) is not supported`},
		{`OS = [ BOOT_MODE = uefi ]`, `OS: BOOT_MODE "uefi" must be pvh, linux or auto`},
		{`OS = [ ROOT = "vda 1" ]`, `OS: ROOT "vda 1" must be a device name`},
		{"OS = [ ROOT = vda ]\nOS = [ ROOT = vdb ]", `OS is given 2 times`},
		{`CONTEXT = [ FILES_DS = "$FILE[NAME=x]" ]`, `CONTEXT: FILES_DS: $FILE[…]: unknown key NAME`},
		{`CONTEXT = [ FILES_DS = "$FILE[IMAGE_ID=1" ]`, `CONTEXT: FILES_DS:`},
		{`CONTEXT = [ FILES_DS = "hello" ]`, `CONTEXT: FILES_DS: "hello" is not a $FILE[…] reference`},
		{`NIC = [ MAC = "02:00:00:00:00" ]`, `NIC 1: MAC "02:00:00:00:00" must be six hex bytes`},
		{`NIC = [ MAC = "01:00:00:00:00:01" ]`, `NIC 1: MAC "01:00:00:00:00:01" is a multicast address`},
		{`RAW = [ TYPE = xen, DATA = "x" ]`, `RAW: TYPE "xen" is not supported`},
		{`DISK = [ IMAGE_ID = 1`, `template: `},
	} {
		_, err := Parse(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.in, err, tc.want)
		}
	}
}

func TestFileRefs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []FileRef
	}{
		{"$FILE[IMAGE_ID=3]", []FileRef{{ImageID: id(3)}}},
		{" $file[ image_id = 3 ] ", []FileRef{{ImageID: id(3)}}},
		{`$FILE[IMAGE="a \"b\"", IMAGE_UNAME="u"]`, []FileRef{{Image: `a "b"`, ImageUname: "u"}}},
		{`$FILE[IMAGE=k]$FILE[IMAGE_ID=1]`, []FileRef{{Image: "k"}, {ImageID: id(1)}}},
	} {
		got, err := ParseFileRefs(tc.in)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseFileRefs(%q) = %+v, %v", tc.in, got, err)
			continue
		}
		for _, r := range got {
			back, err := ParseFileRefs(r.String())
			if err != nil || !reflect.DeepEqual(back[0], r) {
				t.Errorf("String() %q does not read back: %+v %v", r.String(), back, err)
			}
		}
	}
	if (FileRef{}).String() != "" {
		t.Error("zero FileRef has a string")
	}
}
