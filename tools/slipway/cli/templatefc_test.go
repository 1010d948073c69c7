package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
)

// TestTemplateFirecracker asks the launcher for Firecracker configurations
// through the CLI: a template without a kernel gets its configuration
// printed with the problem on stderr and exit 1 (--output not written); a
// template naming a missing image is an error naming it. The launcher's
// own tests cover valid configurations with a real kernel.
func TestTemplateFirecracker(t *testing.T) {
	flags, _ := stack(t)
	dir := t.TempDir()
	file := testenv.WriteFile(t, filepath.Join(dir, "fc.tmpl"), "NAME = \"fc\"\nVCPU = 2\nMEMORY = 512\n")
	must(t, slipway(t, flags, "template", "create", file), "template create")
	r := slipway(t, flags, "template", "firecracker", "fc")
	var c schemas.FirecrackerConfig
	if err := json.Unmarshal([]byte(r.stdout), &c); err != nil {
		t.Fatalf("template firecracker printed no configuration: %v\n%s", err, r.stdout)
	}
	if r.code != 1 || c.MachineConfig.VcpuCount != 2 || c.MachineConfig.MemSizeMiB != 512 ||
		!strings.Contains(r.stderr, "problem: OS/KERNEL_DS is not set") || !strings.Contains(r.stderr, "not valid") {
		t.Errorf("template firecracker of a template without a kernel: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	out := filepath.Join(dir, "config.json")
	r = slipway(t, flags, "template", "firecracker", "0", "--output", out)
	if _, err := os.Stat(out); r.code != 1 || !os.IsNotExist(err) {
		t.Errorf("--output of an invalid configuration: exit %d, file: %v", r.code, err)
	}

	testenv.WriteFile(t, file, "NAME = \"fc-missing\"\nDISK = [ IMAGE_ID = 999 ]\n")
	must(t, slipway(t, flags, "template", "create", file), "template create")
	r = slipway(t, flags, "template", "firecracker", "fc-missing")
	if r.code != 1 || !strings.Contains(r.stderr, "image 999 does not exist") || r.stdout != "" {
		t.Errorf("template firecracker with a missing image: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = slipway(t, flags, "template", "firecracker", "nope")
	if r.code != 1 || !strings.Contains(r.stderr, `no template is named "nope"`) {
		t.Errorf("template firecracker of a missing template: exit %d %s", r.code, r.stderr)
	}
}
