package integration

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/ovf/ovftest"
	"github.com/slipway/slipway/schemas"
)

// ovaTemplate is what `slipway template show --json` prints of an OVA's
// template.
type ovaTemplate struct {
	ID       int64  `json:"id"`
	Name     string `json:"name"`
	Template string `json:"template"`
}

// TestImportOVA: an OVA built with qemu-img's streamOptimized VMDKs, a real
// OVF descriptor and a SHA-256 manifest, uploaded by the CLI (--ova FILE)
// fetched over http(s) (a path ending in .ova), or as a loose descriptor
// with its files beside it (a URL ending in .ovf), becomes one READY
// qcow2 image per disk holding the disk's data, and a VM template with the
// descriptor's CPU and memory naming both; nothing is left staged.
func TestImportOVA(t *testing.T) {
	s := newStack(t, stackOptions{boot: true})
	dir := t.TempDir()
	d1, d2 := filepath.Join(dir, "d1.raw"), filepath.Join(dir, "d2.raw")
	writeRandomRaw(t, d1, 64<<20)
	writeRandomRaw(t, d2, 32<<20)
	pkg := ovftest.Build(t, ovftest.Package{Name: "web", Disks: []string{d1, d2}, CPUs: 2, MemoryMiB: 512, OSID: 96, OSType: "debian12_64Guest"})
	srv := httptest.NewServer(http.FileServer(http.Dir(pkg.Dir)))
	defer srv.Close()

	for _, c := range []struct{ name, flag, path string }{
		{"web", "--ova", pkg.OVA},
		{"web-http", "--path", srv.URL + "/web.ova"},
		{"web-ovf", "--path", srv.URL + "/web.ovf"},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, out, code := s.create("--name", c.name, c.flag, c.path)
			if code != 0 {
				t.Fatalf("create exited %d:\n%s", code, out)
			}
			first := s.show(id)
			var second schemas.Image
			s.mustJSON(&second, "image", "show", c.name+"-disk1", "--json")
			second = s.waitSettled(second.ID, 2*time.Minute)
			for i, img := range []schemas.Image{first, second} {
				want := []string{d1, d2}[i]
				if img.State != "READY" || img.Format != "qcow2" || img.Size != []int64{64 << 20, 32 << 20}[i] {
					t.Fatalf("image %d: %s %s %d (%s)", img.ID, img.State, img.Format, img.Size, img.Error)
				}
				if img.Attributes["OVF_NAME"] != "web" || img.Attributes["OVF_OS_TYPE"] != "debian12_64Guest" {
					t.Errorf("image %d attributes %v", img.ID, img.Attributes)
				}
				got := filepath.Join(t.TempDir(), "disk.qcow2")
				s.download(img.Source, got)
				qemuImg(t, "compare", "-f", "qcow2", "-F", "raw", got, want)
			}
			if first.Type != "OS" || second.Type != "DATABLOCK" {
				t.Errorf("types %s, %s; want OS, DATABLOCK", first.Type, second.Type)
			}
			// --wait followed both images, and says what became of the
			// template.
			var tmpl ovaTemplate
			s.mustJSON(&tmpl, "template", "show", c.name, "--json")
			for _, want := range []string{fmt.Sprintf("image %d: READY", first.ID), fmt.Sprintf("image %d: READY", second.ID),
				fmt.Sprintf("VM template %s (ID %d)", c.name, tmpl.ID)} {
				if !strings.Contains(out, want) {
					t.Errorf("create --wait did not say %q:\n%s", want, out)
				}
			}
			for _, want := range []string{`CPU = "2"`, `MEMORY = "512"`, fmt.Sprintf(`IMAGE_ID = "%d"`, id), `IMAGE = "` + c.name + `-disk1"`, `GUEST_OS = "debian12_64Guest"`} {
				if !strings.Contains(tmpl.Template, want) {
					t.Errorf("template lacks %s:\n%s", want, tmpl.Template)
				}
			}
			s.noStaging(t)
		})
	}
}

// noStaging fails unless nothing is staged under ova/ nor uploaded under
// uploads/.
func (s *stack) noStaging(t *testing.T) {
	t.Helper()
	for _, o := range s.objects() {
		if strings.Contains(o, "/"+blob.OVAPrefix) || strings.Contains(o, "/"+blob.StagingPrefix) {
			t.Errorf("left behind: %s", o)
		}
	}
}

// TestImportHostileOVA: hostile OVAs end the image in ERROR with a message
// that names the problem, and leave nothing in S3: no staged disk, no
// upload, no blob, no further image.
func TestImportHostileOVA(t *testing.T) {
	s := newStack(t, stackOptions{})
	disk := filepath.Join(t.TempDir(), "d.raw")
	writeRandomRaw(t, disk, 8<<20)
	good := ovftest.Build(t, ovftest.Package{Name: "vm", Disks: []string{disk}, CPUs: 1, MemoryMiB: 256})
	vmdk, err := os.ReadFile(filepath.Join(good.Dir, "vm-disk1.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := ovftest.Build(t, ovftest.Package{Name: "vm", Disks: []string{disk}, CPUs: 1, MemoryMiB: 256, Edit: ovftest.Corrupt(t, "vm-disk1.vmdk", 70000)})
	tarOf := func(name string, entries ...ovftest.Entry) string {
		return ovftest.Tar(t, filepath.Join(t.TempDir(), name+".ova"), entries...)
	}
	desc := func(href string) []byte { return []byte(ovftest.Descriptor(href, 8<<20)) }
	cases := []struct{ name, ova, want string }{
		{"dot-dot", tarOf("dotdot", ovftest.Entry{Name: "vm.ovf", Data: desc("vm-disk1.vmdk")}, ovftest.Entry{Name: "../vm-disk1.vmdk", Data: vmdk}), `"../vm-disk1.vmdk" leaves the package`},
		{"external href", tarOf("external", ovftest.Entry{Name: "vm.ovf", Data: desc("https://evil.example/disk.vmdk")}), `"https://evil.example/disk.vmdk" is a path`},
		{"billion laughs", tarOf("laughs", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.BillionLaughs)}), "DOCTYPE"},
		{"10000 disks", tarOf("many", ovftest.Entry{Name: "vm.ovf", Data: []byte(ovftest.ManyDisks("vm-disk1.vmdk", 10000))}), "lists 10000 disks, more than 16"},
		{"manifest mismatch", tampered.OVA, "manifest mismatch for vm-disk1.vmdk: SHA256 expected "},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			name := fmt.Sprintf("hostile-%d", i)
			id, out, code := s.create("--name", name, "--ova", c.ova)
			if code == 0 {
				t.Fatalf("a hostile OVA was imported:\n%s", out)
			}
			img := s.show(id)
			if img.State != "ERROR" || !strings.Contains(img.Error, c.want) {
				t.Errorf("image %d: %s %q, want ERROR containing %q", id, img.State, img.Error, c.want)
			}
			if !strings.Contains(out, c.want) {
				t.Errorf("the CLI did not say %q:\n%s", c.want, out)
			}
			if _, _, code := s.slipway("image", "show", name+"-disk1"); code == 0 {
				t.Errorf("image %s-disk1 exists", name)
			}
			s.noStaging(t)
			for _, o := range s.objects() {
				if strings.Contains(o, fmt.Sprintf("/images/%d/", id)) {
					t.Errorf("left behind: %s", o)
				}
			}
		})
	}
}

// TestOVABoots: the disk of a container image the builder made bootable
// (busybox, a CMD printing a token), exported as a raw file and packed as
// an OVA (streamOptimized VMDK, descriptor, manifest), is imported with
// --ova, and its VM template boots it under QEMU and prints the token. An
// OVF names no kernel: the test adds the registry's kernel to the
// template, as a person would for a disk without a bootloader.
func TestOVABoots(t *testing.T) {
	deb := debianKernelPackage(t)
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t), boot: true})

	// The guest computes part of the token, so only a shell that ran on
	// the disk prints it (the command's text holds "$((6*7))", not 42).
	suffix := randomHex(t, 6)
	token := "OVA-TOKEN-42-" + suffix
	push(t, host+"/test/ova:1.0", []v1.Layer{layer(t, busyboxRoot(t))}, v1.Config{
		Entrypoint: []string{"/bin/busybox", "sh", "-c"}, Cmd: []string{"echo OVA-TOKEN-$((6*7))-" + suffix}, Env: []string{"PATH=/bin"},
	})
	kernelID := mustID(s.t, s.mustSlipway("kernel", "add", "--name", "debian", deb))
	if img := s.waitSettled(kernelID, 2*time.Minute); img.State != "READY" {
		t.Fatalf("kernel image %d is %s (%s)", kernelID, img.State, img.Error)
	}
	srcID, out, code := s.create("--name", "ova-src", "--path", "docker://"+host+"/test/ova?tag=1.0&size=64&filesystem=ext4&format=raw")
	if code != 0 {
		t.Fatalf("docker import exited %d:\n%s", code, out)
	}
	raw := filepath.Join(t.TempDir(), "root.raw")
	s.download(s.show(srcID).Source, raw)
	pkg := ovftest.Build(t, ovftest.Package{Name: "bootme", Disks: []string{raw}, CPUs: 1, MemoryMiB: 256, OSID: 36, OSType: "otherLinux64Guest"})

	id, out, code := s.create("--name", "bootme", "--ova", pkg.OVA)
	if code != 0 {
		t.Fatalf("OVA import exited %d:\n%s", code, out)
	}
	var tmpl ovaTemplate
	s.mustJSON(&tmpl, "template", "show", "bootme", "--json")
	if !strings.Contains(tmpl.Template, fmt.Sprintf(`IMAGE_ID = "%d"`, id)) {
		t.Fatalf("template of the OVA:\n%s", tmpl.Template)
	}
	text := tmpl.Template + fmt.Sprintf("OS = [ KERNEL_DS = \"$FILE[IMAGE_ID=%d]\", ROOT = \"vda\" ]\n", kernelID)
	path := filepath.Join(t.TempDir(), "bootme.tmpl")
	writeFile(t, path, []byte(text))
	s.mustSlipway("template", "update", "bootme", path)
	vm := s.instantiate(t, tmpl.ID)
	s.waitConsole(t, vm, token, 6*time.Minute)
	s.terminate(t, vm)
}

// TestOVATemplateRefused: an OVA imported under the name of an existing
// VM template. The images are imported all the same (--wait follows
// both to READY); the launcher's refusal of the template is reported by
// the CLI, which exits non-zero, and recorded on the first image; the
// existing template is untouched and nothing is left staged. Then an OVA
// whose second disk cannot be converted: --wait follows it to ERROR and
// exits non-zero, the first image is READY.
func TestOVATemplateRefused(t *testing.T) {
	s := newStack(t, stackOptions{boot: true})
	dir := t.TempDir()
	d1, d2 := filepath.Join(dir, "d1.raw"), filepath.Join(dir, "d2.raw")
	writeRandomRaw(t, d1, 8<<20)
	writeRandomRaw(t, d2, 8<<20)

	t.Run("template name taken", func(t *testing.T) {
		text := "NAME = \"taken\"\nCPU = \"1\"\nMEMORY = \"64\"\n"
		path := filepath.Join(t.TempDir(), "taken.tmpl")
		writeFile(t, path, []byte(text))
		tmplID := mustID(t, s.mustSlipway("template", "create", path))
		pkg := ovftest.Build(t, ovftest.Package{Name: "taken", Disks: []string{d1, d2}, CPUs: 1, MemoryMiB: 256})
		out, first, second := s.createOVAFailing(t, "taken", pkg.OVA)
		for _, img := range []schemas.Image{first, second} {
			if img.State != "READY" {
				t.Errorf("image %d (%s) is %s (%s): the template's refusal must not fail the images", img.ID, img.Name, img.State, img.Error)
			}
			if want := fmt.Sprintf("image %d: READY", img.ID); !strings.Contains(out, want) {
				t.Errorf("create --wait did not follow image %d to READY:\n%s", img.ID, out)
			}
		}
		refusal := `the launcher refused the VM template "taken": a template named "taken" already exists (ID ` + fmt.Sprint(tmplID) + `)`
		if !strings.Contains(out, "VM template refused: "+refusal) {
			t.Errorf("the CLI did not report the refusal %q:\n%s", refusal, out)
		}
		if got := first.Attributes["OVA_TEMPLATE_ERROR"]; !strings.Contains(got, refusal) || first.Attributes["OVA_TEMPLATE"] != "" {
			t.Errorf("image %d records the template as %v", first.ID, first.Attributes)
		}
		var tmpl ovaTemplate
		s.mustJSON(&tmpl, "template", "show", "taken", "--json")
		if tmpl.ID != tmplID || tmpl.Template != text {
			t.Errorf("the existing template changed: ID %d, text %q", tmpl.ID, tmpl.Template)
		}
		s.noStaging(t)
	})

	t.Run("second disk fails", func(t *testing.T) {
		// No manifest, so only the conversion finds the damaged grain.
		pkg := ovftest.Build(t, ovftest.Package{Name: "halfbad", Disks: []string{d1, d2}, CPUs: 1, MemoryMiB: 256, Manifest: "none",
			Edit: ovftest.Corrupt(t, "halfbad-disk2.vmdk", 70000)})
		out, first, second := s.createOVAFailing(t, "halfbad", pkg.OVA)
		if first.State != "READY" || second.State != "ERROR" {
			t.Fatalf("images %d and %d are %s and %s (%s), want READY and ERROR", first.ID, second.ID, first.State, second.State, second.Error)
		}
		if want := fmt.Sprintf("image %d: ERROR", second.ID); !strings.Contains(out, want) || !strings.Contains(out, fmt.Sprintf("image %d: READY", first.ID)) {
			t.Errorf("create --wait did not follow both images (want %q):\n%s", want, out)
		}
		s.noStaging(t)
	})
}

// createOVAFailing imports the two-disk OVA at path as name with --wait,
// which must exit non-zero, and returns what the CLI said and both images.
func (s *stack) createOVAFailing(t *testing.T, name, path string) (out string, first, second schemas.Image) {
	t.Helper()
	id, out, code := s.create("--name", name, "--ova", path)
	t.Logf("create --wait, exit %d:\n%s", code, out)
	if code == 0 {
		t.Fatalf("create --wait exited 0:\n%s", out)
	}
	s.mustJSON(&second, "image", "show", name+"-disk1", "--json")
	return out, s.show(id), second
}
