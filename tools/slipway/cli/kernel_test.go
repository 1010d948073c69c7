package cli

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
)

// TestKernelCommands adds Debian's bzImage and a file that is not a
// kernel through the CLI against the whole stack, and reads the facts back.
func TestKernelCommands(t *testing.T) {
	root, err := filepath.Abs("../../..")
	if err != nil {
		t.Fatal(err)
	}
	vmlinuz := filepath.Join(root, "bin", "kernel", "vmlinuz")
	if _, err := os.Stat(vmlinuz); err != nil {
		testenv.Skip(t, "no kernel (run tools/fetch-kernel.sh): %v", err)
	}
	// kernel-registry finds slipway-initrd through the variable `up` passes on.
	initrd := filepath.Join(t.TempDir(), "slipway-initrd")
	build := exec.Command("go", "build", "-o", initrd, "../../../services/kernel-registry/cmd/slipway-initrd")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build slipway-initrd: %v\n%s", err, out)
	}
	t.Setenv("SLIPWAY_INITRD_INIT", initrd)
	flags, _ := stack(t)

	r := must(t, slipway(t, flags, "kernel", "add", "--name", "debian-bz", vmlinuz), "kernel", "add")
	id := strings.TrimSpace(strings.TrimPrefix(r.stdout, "ID: "))
	if !strings.HasPrefix(r.stdout, "ID: ") || id == "" {
		t.Fatalf("kernel add printed %q", r.stdout)
	}
	for _, ref := range []string{id, "debian-bz"} {
		r = must(t, slipway(t, flags, "kernel", "show", ref, "--json"), "kernel", "show")
		var k map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &k); err != nil {
			t.Fatalf("show --json: %v\n%s", err, r.stdout)
		}
		for _, key := range []string{"format", "arch", "version", "pvh", "firecracker", "initrd"} {
			if _, ok := k[key]; !ok {
				t.Errorf("show --json lacks %q: %s", key, r.stdout)
			}
		}
		if k["format"] != "bzimage" || k["arch"] != "x86_64" || k["pvh"] != true || k["firecracker"] != false || k["initrd"] != nil {
			t.Errorf("show %s: %s", ref, r.stdout)
		}
	}
	r = must(t, slipway(t, flags, "kernel", "show", id), "kernel", "show")
	for _, want := range []string{"KERNEL " + id + " INFORMATION", "FORMAT         : bzimage", "PVH            : Yes (entry 0x"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("kernel show lacks %q:\n%s", want, r.stdout)
		}
	}
	r = must(t, slipway(t, flags, "kernel", "list"), "kernel", "list")
	if !strings.Contains(r.stdout, "debian-bz") || !strings.Contains(r.stdout, "PVH") {
		t.Errorf("kernel list:\n%s", r.stdout)
	}
	// The KERNEL image is in the catalog too.
	r = must(t, slipway(t, flags, "image", "show", id, "--json"), "image", "show")
	if !strings.Contains(r.stdout, `"KERNEL"`) {
		t.Errorf("image show %s: %s", id, r.stdout)
	}

	notKernel := filepath.Join(t.TempDir(), "notes.txt")
	os.WriteFile(notKernel, []byte(strings.Repeat("just text\n", 1000)), 0o644)
	r = slipway(t, flags, "kernel", "add", notKernel)
	if r.code == 0 || strings.Contains(r.stdout, "ID:") || !strings.Contains(r.stderr, "not a kernel") {
		t.Fatalf("adding a text file: exit %d\nstdout %s\nstderr %s", r.code, r.stdout, r.stderr)
	}
	r = slipway(t, flags, "kernel", "show", "no-such-kernel")
	if r.code == 0 || !strings.Contains(r.stderr, "no such kernel") {
		t.Fatalf("show of a missing kernel: exit %d, %s", r.code, r.stderr)
	}
}
