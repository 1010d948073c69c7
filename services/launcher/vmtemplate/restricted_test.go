package vmtemplate

import (
	"slices"
	"strings"
	"testing"
)

func TestRestricted(t *testing.T) {
	def, err := ParseRestricted("")
	if err != nil || !slices.Equal(def, DefaultRestricted) {
		t.Fatalf("ParseRestricted(\"\") = %v, %v", def, err)
	}
	text := "NAME = x\nRAW = [ TYPE = kvm, DATA = \"-device e1000\" ]\nOS = [ KERNEL = \"/boot/vmlinuz\" ]\nDISK = [ IMAGE_ID = 1, SOURCE = \"/dev/sda\" ]\n"
	got, err := Restricted(text, def)
	if err != nil || !slices.Equal(got, []string{"RAW", "OS/KERNEL", "DISK/SOURCE"}) {
		t.Errorf("Restricted(default) = %v, %v", got, err)
	}
	// A list that omits RAW allows it; a vector name restricts the whole vector.
	list, err := ParseRestricted("os/kernel, disk")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := Restricted(text, list); !slices.Equal(got, []string{"OS/KERNEL", "DISK"}) {
		t.Errorf("Restricted(%v) = %v", list, got)
	}
	if none, err := ParseRestricted("none"); err != nil || len(none) != 0 {
		t.Errorf("ParseRestricted(none) = %v, %v", none, err)
	}
	if got, _ := Restricted("RAW = \"-usb\"\n", nil); len(got) != 0 {
		t.Errorf("nothing restricted: %v", got)
	}
	for _, bad := range []string{"RAW,a/b/c", "RAW;", "os.kernel"} {
		if _, err := ParseRestricted(bad); err == nil || !strings.Contains(err.Error(), "must be NAME or VECTOR/NAME") {
			t.Errorf("ParseRestricted(%q) = %v", bad, err)
		}
	}
}

// Host-path attributes are refused by Parse even when the operator allows them.
func TestHostPathsRefused(t *testing.T) {
	for text, want := range map[string]string{
		"EMULATOR = \"/usr/bin/qemu\"\n":              "EMULATOR names a path on the host",
		"DISK = [ IMAGE_ID = 1, SOURCE = \"/x\" ]\n":  "DISK/SOURCE names a path on the host",
		"CONTEXT = [ FILES = \"/etc/shadow\" ]\n":     "CONTEXT/FILES names a path on the host",
		"OS = [ BOOTLOADER = \"/usr/bin/pygrub\" ]\n": "OS/BOOTLOADER names a path on the host",
		"OS = [ KERNEL = \"/boot/vmlinuz\" ]\n":       "OS: KERNEL (a path on the host) is not supported",
	} {
		if _, err := Parse(text); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Parse(%q) = %v, want %q", text, err, want)
		}
	}
}

// A NIC MODEL becomes a -device driver: only QEMU's network cards are accepted.
func TestNICModel(t *testing.T) {
	for _, ok := range []string{"virtio", "e1000", "rtl8139", "virtio-net-pci"} {
		if _, err := Parse("NIC = [ MODEL = \"" + ok + "\" ]\n"); err != nil {
			t.Errorf("MODEL %s: %v", ok, err)
		}
	}
	for _, bad := range []string{"vhost-vsock-pci", "vfio-pci", "usb-host", "e1000,romfile=x", "pvpanic"} {
		if _, err := Parse("NIC = [ MODEL = \"" + bad + "\" ]\n"); err == nil || !strings.Contains(err.Error(), "is not a network card QEMU emulates") {
			t.Errorf("MODEL %s: %v", bad, err)
		}
	}
}
