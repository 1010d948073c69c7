package converter

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/fetch"
	"github.com/slipway/slipway/pkg/ovf/ovftest"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// ovaStaging is where the tests' ova-unpack commands (saga testenv.Saga)
// stage disks.
var ovaStaging = blob.DefaultLocations().OVAStaging(testenv.Saga)

// TestOvaUnpackTwoDisks: an OVA built with qemu-img's streamOptimized
// VMDKs, a real descriptor and a SHA-256 manifest is read in one pass;
// the event carries the descriptor's system, and each staged disk holds
// the data of its source.
func TestOvaUnpackTwoDisks(t *testing.T) {
	h := newHarness(t, Config{})
	d1, d2 := rawDisk(t, 64<<20), rawDisk(t, 32<<20)
	pkg := ovftest.Build(t, ovftest.Package{Name: "web-01", Disks: []string{d1, d2}, CPUs: 2, MemoryMiB: 1536, OSID: 96, OSType: "debian12_64Guest"})
	src := h.upload(pkg.OVA, "uploads/alice/0001/web-01.ova")

	h.command("ova-unpack", schemas.ConverterOvaUnpack{ImageID: 40, Source: src, Staging: ovaStaging})
	var ev schemas.ConverterOvaUnpacked
	h.event("ova-unpacked", "40", &ev)
	if ev.Name != "web-01" || ev.Cpus != 2 || ev.MemoryMiB != 1536 || ev.OSID != 96 || ev.OSType != "debian12_64Guest" || !ev.Manifest {
		t.Errorf("unpacked %+v", ev)
	}
	if len(ev.Disks) != 2 {
		t.Fatalf("disks %+v", ev.Disks)
	}
	for i, src := range []string{d1, d2} {
		d := ev.Disks[i]
		if d.Staged != blob.OVADisk(ovaStaging, i) || d.Format != schemas.DiskFormatVMDK || d.Capacity != []int64{64 << 20, 32 << 20}[i] || d.VirtualSize != d.Capacity {
			t.Errorf("disk %d: %+v", i, d)
		}
		staged := h.download(d.Staged)
		qemuImg(t, "compare", "-f", "vmdk", "-F", "raw", staged, src)
	}
	// What the tests staged is theirs to clean.
	for _, d := range ev.Disks {
		if err := h.store.DeleteURL(h.ctx, d.Staged); err != nil {
			t.Error(err)
		}
	}
}

// TestOvaUnpackHostile: each hostile package ends in a terminal failure
// whose message names the problem, and nothing is staged.
func TestOvaUnpackHostile(t *testing.T) {
	h := newHarness(t, Config{MaxVirtualSize: 1 << 30})
	disk := rawDisk(t, 8<<20)
	good := ovftest.Build(t, ovftest.Package{Name: "vm", Disks: []string{disk}, CPUs: 1, MemoryMiB: 256})
	vmdk, err := os.ReadFile(filepath.Join(good.Dir, "vm-disk1.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	evil := filepath.Join(t.TempDir(), "evil.qcow2")
	qemuImg(t, "create", "-f", "qcow2", "-u", "-b", "/etc/passwd", "-F", "raw", evil, "1M")
	backing, err := os.ReadFile(evil)
	if err != nil {
		t.Fatal(err)
	}
	desc := func(href string) []byte { return []byte(ovftest.Descriptor(href, 8<<20)) }
	tarOf := func(name string, entries ...ovftest.Entry) string {
		return ovftest.Tar(t, filepath.Join(t.TempDir(), name+".ova"), entries...)
	}
	tampered := ovftest.Build(t, ovftest.Package{Name: "vm", Disks: []string{disk}, CPUs: 1, MemoryMiB: 256, Edit: ovftest.Corrupt(t, "vm-disk1.vmdk", 70000)})
	cases := []struct{ name, ova, want string }{
		{"dot-dot entry", tarOf("dotdot", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "../../etc/cron.d/x", Data: vmdk}), `"../../etc/cron.d/x" leaves the package`},
		{"dot-dot href", tarOf("dotdothref", ovftest.Entry{Name: "vm.ovf", Data: desc("../vm-disk1.vmdk")}), `"../vm-disk1.vmdk" leaves the package`},
		{"external href", tarOf("external", ovftest.Entry{Name: "vm.ovf", Data: desc("http://169.254.169.254/latest/meta-data")}), "is a path"},
		{"absolute entry", tarOf("abs", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "/etc/passwd", Data: vmdk}), "is a path"},
		{"symlink entry", tarOf("symlink", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "vm-disk1.vmdk", Link: "/etc/shadow"}), "not a regular file"},
		{"billion laughs", tarOf("laughs", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.BillionLaughs)}), "DOCTYPE"},
		{"external entity", tarOf("xxe", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.ExternalEntity)}), "DOCTYPE"},
		{"10000 disks", tarOf("many", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.ManyDisks("vm-disk1.vmdk", 10000))}), "lists 10000 disks, more than 16"},
		{"manifest mismatch", tampered.OVA, "manifest mismatch for vm-disk1.vmdk: SHA256 expected "},
		{"manifest lists a missing file", tarOf("missing", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "vm-disk1.vmdk", Data: vmdk},
			ovftest.Entry{Name: "vm.mf", Data: []byte("SHA1(vm-disk2.vmdk)= da39a3ee5e6b4b0d3255bfef95601890afd80709\n")}), "lists vm-disk2.vmdk, which the package does not hold"},
		{"descriptor not first", tarOf("order", ovftest.Entry{Name: "vm-disk1.vmdk", Data: vmdk}, ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}), "first file is vm-disk1.vmdk, not the OVF descriptor"},
		{"unreferenced file", tarOf("extra", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "payload.sh", Data: []byte("#!/bin/sh")}), "payload.sh, which its descriptor does not reference"},
		{"disk file missing", tarOf("nodisk", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}), "file vm-disk1.vmdk is not in the package"},
		{"capacity below the disk", tarOf("capacity", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.Descriptor("vm-disk1.vmdk", 1<<20))}, ovftest.Entry{Name: "vm-disk1.vmdk", Data: vmdk}), "more than the descriptor's capacity"},
		{"capacity above the limit", tarOf("huge", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.Descriptor("vm-disk1.vmdk", 2<<30))}), "is more than 1073741824"},
		{"backing file", tarOf("backing", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "vm-disk1.vmdk", Data: backing}), "/etc/passwd"},
		{"not a tar", tarOf("empty"), "no OVF descriptor"},
		{"size mismatch", tarOf("size", ovftest.Entry{Name: "vm.ovf", Data: []byte(strings.Replace(string(desc("vm-disk1.vmdk")), `ovf:id="file1"`, `ovf:id="file1" ovf:size="4096"`, 1))},
			ovftest.Entry{Name: "vm-disk1.vmdk", Data: vmdk}), "but the descriptor's ovf:size says 4096"},
		{"gzip that is not", tarOf("notgzip", ovftest.Entry{Name: "vm.ovf", Data: []byte(strings.Replace(string(desc("vm-disk1.vmdk")), `ovf:id="file1"`, `ovf:id="file1" ovf:compression="gzip"`, 1))},
			ovftest.Entry{Name: "vm-disk1.vmdk", Data: vmdk}), "ovf:compression is gzip but"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			id := int64(100 + i)
			src := h.upload(c.ova, fmt.Sprintf("uploads/alice/h%d/vm.ova", i))
			h.command("ova-unpack", schemas.ConverterOvaUnpack{ImageID: id, Source: src, Staging: ovaStaging})
			var ev schemas.Failure
			h.event("failed", fmt.Sprint(id), &ev)
			if ev.Retryable || ev.Code != schemas.CodeInvalidInput || !strings.Contains(ev.Error, c.want) {
				t.Errorf("failed %+v: want a terminal failure containing %q", ev, c.want)
			}
			keys, err := h.store.List(h.ctx, testenv.Uploads, blob.OVAPrefix)
			if err != nil || len(keys) != 0 {
				t.Errorf("staged objects left: %v %v", keys, err)
			}
		})
	}
}

// TestOvaUnpackGzipFile: a file the descriptor marks ovf:compression
// "gzip" is staged decompressed; the manifest's digest is of the file as
// packed.
func TestOvaUnpackGzipFile(t *testing.T) {
	h := newHarness(t, Config{})
	disk := rawDisk(t, 16<<20)
	vmdk := filepath.Join(t.TempDir(), "d.vmdk")
	qemuImg(t, "convert", "-O", "vmdk", "-o", "subformat=streamOptimized", disk, vmdk)
	testenv.Exec(t, "gzip", "-k", vmdk)
	gz, err := os.ReadFile(vmdk + ".gz")
	if err != nil {
		t.Fatal(err)
	}
	desc := strings.Replace(ovftest.Descriptor("vm-disk1.vmdk", 16<<20), `ovf:id="file1"`, `ovf:id="file1" ovf:compression="gzip"`, 1)
	mf := fmt.Sprintf("SHA256(vm.ovf)= %s\nSHA256(vm-disk1.vmdk)= %s\n", sha256Hex([]byte(desc)), sha256Hex(gz))
	ova := ovftest.Tar(t, filepath.Join(t.TempDir(), "vm.ova"), ovftest.Entry{Name: "vm.ovf", Data: []byte(desc)},
		ovftest.Entry{Name: "vm-disk1.vmdk", Data: gz}, ovftest.Entry{Name: "vm.mf", Data: []byte(mf)})
	h.command("ova-unpack", schemas.ConverterOvaUnpack{ImageID: 42, Source: h.upload(ova, "uploads/alice/gz/vm.ova"), Staging: ovaStaging})
	var ev schemas.ConverterOvaUnpacked
	h.event("ova-unpacked", "42", &ev)
	if len(ev.Disks) != 1 || ev.Disks[0].Format != schemas.DiskFormatVMDK || !ev.Manifest {
		t.Fatalf("unpacked %+v", ev)
	}
	qemuImg(t, "compare", "-f", "vmdk", "-F", "raw", h.download(ev.Disks[0].Staged), disk)
	if err := h.store.DeleteURL(h.ctx, ev.Disks[0].Staged); err != nil {
		t.Error(err)
	}
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestOvaUnpackRefusesOtherStaging: a staging location not derived from
// the saga is refused before anything is fetched.
func TestOvaUnpackRefusesOtherStaging(t *testing.T) {
	h := newHarness(t, Config{})
	other := blob.DefaultLocations().OVAStaging("0f1c2d3e-4b5a-4c6d-8e7f-0a1b2c3d4e5f")
	h.command("ova-unpack", schemas.ConverterOvaUnpack{ImageID: 41, Source: "s3://slipway-uploads/uploads/a/b/c.ova", Staging: other})
	var ev schemas.Failure
	h.event("failed", "41", &ev)
	if ev.Code != schemas.CodeInvalidCommand || !strings.Contains(ev.Error, "derived from the saga") {
		t.Errorf("failed %+v", ev)
	}
}

// TestOvaUnpackLooseOVF: a descriptor served over http with its disk and
// manifest beside it is read like an OVA; without a manifest it is read
// unverified; a disk changed after the manifest was made is refused.
func TestOvaUnpackLooseOVF(t *testing.T) {
	h := newHarness(t, Config{Fetch: fetch.Options{Guard: loopback}})
	disk := rawDisk(t, 16<<20)
	pkg := ovftest.Build(t, ovftest.Package{Name: "loose", Disks: []string{disk}, CPUs: 1, MemoryMiB: 128})
	bare := ovftest.Build(t, ovftest.Package{Name: "bare", Disks: []string{disk}, CPUs: 1, MemoryMiB: 128, Manifest: "none"})
	tampered := ovftest.Build(t, ovftest.Package{Name: "bad", Disks: []string{disk}, CPUs: 1, MemoryMiB: 128, Edit: ovftest.Corrupt(t, "bad-disk1.vmdk", 70000)})
	mux := http.NewServeMux()
	for _, p := range []ovftest.Built{pkg, bare, tampered} {
		prefix := "/" + filepath.Base(p.Dir) + "/"
		mux.Handle(prefix, http.StripPrefix(prefix, http.FileServer(http.Dir(p.Dir))))
	}
	srv := httptest.NewServer(mux)
	defer srv.Close()
	at := func(p ovftest.Built, name string) string { return srv.URL + "/" + filepath.Base(p.Dir) + "/" + name }

	for i, c := range []struct {
		src         string
		manifest    bool
		wantFailure string
	}{
		{at(pkg, "loose.ovf"), true, ""},
		{at(bare, "bare.ovf"), false, ""},
		{at(tampered, "bad.ovf"), true, "manifest mismatch for bad-disk1.vmdk"},
	} {
		id := int64(60 + i)
		h.command("ova-unpack", schemas.ConverterOvaUnpack{ImageID: id, Source: c.src, Staging: ovaStaging})
		if c.wantFailure != "" {
			var ev schemas.Failure
			h.event("failed", fmt.Sprint(id), &ev)
			if !strings.Contains(ev.Error, c.wantFailure) || ev.Code != schemas.CodeInvalidInput {
				t.Errorf("%s: failed %+v", c.src, ev)
			}
			continue
		}
		var ev schemas.ConverterOvaUnpacked
		h.event("ova-unpacked", fmt.Sprint(id), &ev)
		if len(ev.Disks) != 1 || ev.Manifest != c.manifest || ev.MemoryMiB != 128 {
			t.Fatalf("%s: unpacked %+v", c.src, ev)
		}
		qemuImg(t, "compare", "-f", "vmdk", "-F", "raw", h.download(ev.Disks[0].Staged), disk)
		if err := h.store.DeleteURL(h.ctx, ev.Disks[0].Staged); err != nil {
			t.Error(err)
		}
	}
}

func TestSiblingURL(t *testing.T) {
	for src, want := range map[string]string{
		"https://h.example/a/b/web.ovf?sig=x#f": "https://h.example/a/b/web-disk1.vmdk",
		"s3://bucket/dir/web.ovf":               "s3://bucket/dir/web-disk1.vmdk",
		"http://h.example/web.ovf":              "http://h.example/web-disk1.vmdk",
	} {
		if got, err := siblingURL(src, "web-disk1.vmdk"); err != nil || got != want {
			t.Errorf("siblingURL(%s) = %s, %v; want %s", src, got, err, want)
		}
	}
	for _, bad := range []string{"../x", "/etc/passwd", "http://evil/x", "%2e%2e"} {
		if got, err := siblingURL("https://h.example/a/web.ovf", bad); err == nil && !strings.HasPrefix(got, "https://h.example/a/") {
			t.Errorf("siblingURL(%q) = %s", bad, got)
		} else if err == nil && bad != "%2e%2e" {
			t.Errorf("siblingURL(%q) accepted it: %s", bad, got)
		}
	}
}
