package integration

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// vmRecord is what `slipway vm show --json` prints (the keys the issue
// names, and the disks).
type vmRecord struct {
	ID         int64  `json:"id"`
	Name       string `json:"name"`
	State      string `json:"state"`
	TemplateID int64  `json:"template_id"`
	Template   string `json:"template"`
	Error      string `json:"error"`
	Disks      []struct {
		ImageID    int64  `json:"image_id"`
		Target     string `json:"target"`
		Persistent bool   `json:"persistent"`
	} `json:"disks"`
}

// TestBootContainerImage is the headline of issue #4: an OCI image the test
// builds (busybox-static, a CMD printing a token) is pushed to a loopback
// registry, imported with docker://…?format=qcow2, encrypted with LUKS and
// booted under QEMU (TCG here) from a template, with a kernel and initrd
// from kernel-registry (Debian's .deb). The token comes back on the serial
// console; terminating the VM gives the image back READY. Then a
// non-persistent image boots twice at once, and a VM with a CDROM and a
// DATABLOCK sees both.
func TestBootContainerImage(t *testing.T) {
	deb := debianKernelPackage(t)
	reg := httptest.NewServer(registry.New())
	defer reg.Close()
	host := strings.TrimPrefix(reg.URL, "http://")
	s := newStack(t, stackOptions{containers: true, guestInit: buildGuestInit(t), boot: true})

	token := "TOKEN-" + randomHex(t, 6)
	root := layer(t, busyboxRoot(t))
	// The process prints the token, the block devices it sees (name, size
	// in sectors, read-only flag) and the context's hostname, then ends:
	// the init powers the VM off.
	// The last line says the list of disks is complete, so a test reading
	// the console for them does not read it half way.
	script := `echo ` + token + ` host=$(hostname); for d in /sys/block/*; do echo "disk $(basename $d) $(cat $d/size) ro=$(cat $d/ro)"; done; echo ` + token + ` end`
	push(t, host+"/test/bootme:1.0", []v1.Layer{root}, v1.Config{
		Entrypoint: []string{"/bin/busybox", "sh", "-c"}, Cmd: []string{script},
		Env: []string{"PATH=/bin"},
	})

	kernelID := mustID(s.t, s.mustSlipway("kernel", "add", "--name", "debian", deb))
	var kernel struct {
		Format string `json:"format"`
		Arch   string `json:"arch"`
		PVH    bool   `json:"pvh"`
		Initrd *int64 `json:"initrd"`
	}
	s.mustJSON(&kernel, "kernel", "show", fmt.Sprint(kernelID), "--json")
	if kernel.Arch != "x86_64" || kernel.Initrd == nil {
		t.Fatalf("kernel %d: %+v, want x86_64 with an initrd built from the package's modules", kernelID, kernel)
	}
	for _, id := range []int64{kernelID, *kernel.Initrd} {
		if img := s.waitSettled(id, 2*time.Minute); img.State != "READY" {
			t.Fatalf("kernel-registry image %d is %s (%s)", id, img.State, img.Error)
		}
	}

	url := "docker://" + host + "/test/bootme?tag=1.0&size=64&filesystem=ext4&format=qcow2"
	plainID, out, code := s.create("--name", "bootme", "--path", url)
	if code != 0 {
		t.Fatalf("docker import exited %d:\n%s", code, out)
	}
	luksID := mustID(s.t, s.mustSlipway("luks", "encrypt", fmt.Sprint(plainID), "--name", "bootme-luks"))
	luks := s.waitSettled(luksID, 3*time.Minute)
	if luks.State != "READY" || luks.Format != "luks" || luks.Attributes["LUKS_SECRET"] == "" {
		t.Fatalf("encrypted image: %+v", luks)
	}
	s.mustSlipway("image", "persistent", fmt.Sprint(luksID))

	t.Run("LUKS persistent image boots and prints its token", func(t *testing.T) {
		tmpl := s.template(t, "luks-vm", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]`, luksID), kernelID)
		vm := s.instantiate(t, tmpl)
		console := s.waitConsole(t, vm, token+" end", 6*time.Minute)
		if !strings.Contains(console, "SLIPWAY-READY") || !strings.Contains(console, "host=luks-vm") {
			t.Errorf("console lacks the ready line or the context hostname:\n%s", console)
		}
		if img := s.show(luksID); img.State != "USED_PERS" || img.RVMs != 1 {
			t.Errorf("while the VM exists the image is %s with %d VMs, want USED_PERS 1", img.State, img.RVMs)
		}
		s.terminate(t, vm)
		// The guest mounted its root read-write, so the write-back changed
		// the blob; it is still LUKS and the catalog's digest is the blob's.
		img := s.waitImageState(luksID, "READY", time.Minute)
		if img.RVMs != 0 || img.Format != "luks" || img.SHA256 == luks.SHA256 {
			t.Errorf("after terminate: %+v (before: sha256 %s)", img, luks.SHA256)
		}
		if sum, _ := s.objectSHA256(img.Source); sum != img.SHA256 {
			t.Errorf("the stored blob's sha256 is %s, the catalog says %s", sum, img.SHA256)
		}
	})

	t.Run("a non-persistent image boots twice at once", func(t *testing.T) {
		tmpl := s.template(t, "twin", fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]`, plainID), kernelID)
		a, b := s.instantiate(t, tmpl), s.instantiate(t, tmpl)
		for _, vm := range []int64{a, b} {
			s.waitConsole(t, vm, token, 8*time.Minute)
		}
		if img := s.show(plainID); img.State != "USED" || img.RVMs != 2 {
			t.Errorf("with two VMs the image is %s with %d VMs, want USED 2", img.State, img.RVMs)
		}
		s.terminate(t, a)
		s.terminate(t, b)
		s.waitImageState(plainID, "READY", time.Minute)
	})

	t.Run("the guest sees a CDROM and a DATABLOCK", func(t *testing.T) {
		iso := makeISO(t, t.TempDir())
		cdID, out, code := s.create("--name", "cd", "--type", "CDROM", "--path", iso)
		if code != 0 {
			t.Fatalf("cdrom import: %s", out)
		}
		dbID, out, code := s.create("--name", "data", "--type", "DATABLOCK", "--size", "24", "--fs", "ext4")
		if code != 0 {
			t.Fatalf("datablock: %s", out)
		}
		disks := fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\nDISK = [ IMAGE_ID = %d ]\nDISK = [ IMAGE_ID = %d ]", plainID, cdID, dbID)
		vm := s.instantiate(t, s.template(t, "devices", disks, kernelID))
		console := s.waitConsole(t, vm, token+" end", 6*time.Minute)
		var rec vmRecord
		s.mustJSON(&rec, "vm", "show", fmt.Sprint(vm), "--json")
		if len(rec.Disks) != 3 {
			t.Fatalf("vm show has %d disks, want 3: %+v", len(rec.Disks), rec)
		}
		// The DATABLOCK is 24 MiB = 49152 sectors, writable; the CDROM is
		// read-only with the ISO's size.
		fi, err := os.Stat(iso)
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			fmt.Sprintf("disk %s 49152 ro=0", rec.Disks[2].Target),
			fmt.Sprintf("disk %s %d ro=1", rec.Disks[1].Target, fi.Size()/512),
		} {
			if !strings.Contains(console, want) {
				t.Errorf("the guest does not see %q:\n%s", want, console)
			}
		}
		s.terminate(t, vm)
	})
}

// debianKernelPackage is the Debian linux-image package tools/fetch-kernel.sh
// keeps in bin/kernel (make kernel).
func debianKernelPackage(t testing.TB) string {
	t.Helper()
	return testenv.NeedRepoFile(t, "bin/kernel/linux-image.deb", "run make kernel (tools/fetch-kernel.sh)")
}

// mustJSON runs a CLI command printing JSON and decodes it into v.
func (s *stack) mustJSON(v any, args ...string) {
	s.t.Helper()
	out := s.mustSlipway(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		s.t.Fatalf("slipway %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// template creates a VM template booting kernelID (and its own initrd) with
// disks, 256 MiB and the context hostname = name.
func (s *stack) template(t testing.TB, name, disks string, kernelID int64) int64 {
	t.Helper()
	text := fmt.Sprintf(`NAME = "%s"
CPU = 1
MEMORY = 256
%s
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", ROOT = "vda" ]
CONTEXT = [ HOSTNAME = "%s" ]
`, name, disks, kernelID, name)
	path := filepath.Join(t.TempDir(), name+".tmpl")
	writeFile(t, path, []byte(text))
	return mustID(s.t, s.mustSlipway("template", "create", path))
}

func (s *stack) instantiate(t testing.TB, tmpl int64) int64 {
	t.Helper()
	return mustID(s.t, s.mustSlipway("template", "instantiate", fmt.Sprint(tmpl)))
}

// waitConsole polls the VM's console until it holds want, failing early
// when the VM fails.
func (s *stack) waitConsole(t *testing.T, vm int64, want string, timeout time.Duration) string {
	t.Helper()
	var console string
	var rec vmRecord
	testenv.Eventually(timeout, time.Second, func() bool {
		console = s.mustSlipway("vm", "console", fmt.Sprint(vm))
		if strings.Contains(console, want) {
			return true
		}
		s.mustJSON(&rec, "vm", "show", fmt.Sprint(vm), "--json")
		return rec.State == "FAILED"
	})
	if !strings.Contains(console, want) {
		t.Fatalf("VM %d is %s (%s) and its console has no %q:\n%s", vm, rec.State, rec.Error, want, console)
	}
	return console
}

// terminate ends a VM and waits for DONE.
func (s *stack) terminate(t *testing.T, vm int64) {
	t.Helper()
	s.mustSlipway("vm", "terminate", fmt.Sprint(vm))
	deadline := time.Now().Add(3 * time.Minute)
	for {
		var rec vmRecord
		s.mustJSON(&rec, "vm", "show", fmt.Sprint(vm), "--json")
		if rec.State == "DONE" {
			return
		}
		if rec.State == "FAILED" || time.Now().After(deadline) {
			t.Fatalf("VM %d did not end DONE: %s (%s)", vm, rec.State, rec.Error)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// waitImageState polls the catalog until the image is in state.
func (s *stack) waitImageState(id int64, state string, timeout time.Duration) (img schemas.Image) {
	s.t.Helper()
	if !testenv.Eventually(timeout, 300*time.Millisecond, func() bool { img = s.show(id); return string(img.State) == state }) {
		s.t.Fatalf("image %d is %s, want %s", id, img.State, state)
	}
	return img
}
