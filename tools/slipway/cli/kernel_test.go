package cli

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/s3iam"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/tools/slipway/up"
)

// TestKernelCommands adds Debian's bzImage and a file that is not a
// kernel through the CLI against the whole stack, and reads the facts back.
func TestKernelCommands(t *testing.T) {
	vmlinuz := testenv.RepoFile(t, "bin/kernel/vmlinuz", "run tools/fetch-kernel.sh")
	// kernel-registry finds slipway-initrd through the variable `up` passes on.
	t.Setenv("SLIPWAY_INITRD_INIT", testenv.Build(t, "./services/kernel-registry/cmd/slipway-initrd", true))
	// A provisioned stack: the CLI uploads with oneadmin's upload keys,
	// kernel-registry and the catalog act with their own MinIO users.
	flags, dir := provisionedStack(t)

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
	mustShow(t, flags, []string{"kernel", "show", id}, "KERNEL "+id+" INFORMATION", "FORMAT         : bzimage", "PVH            : Yes (entry 0x")
	mustShow(t, flags, []string{"kernel", "list"}, "debian-bz", "PVH")
	// The KERNEL image is in the catalog too.
	r = must(t, slipway(t, flags, "image", "show", id, "--json"), "image", "show")
	if !strings.Contains(r.stdout, `"KERNEL"`) {
		t.Errorf("image show %s: %s", id, r.stdout)
	}

	// The upload was consumed: nothing is left under kernels/.
	root, err := blob.ReadKeys(filepath.Join(dir, up.S3KeysDir, s3iam.RootKeysFile))
	if err != nil {
		t.Fatal(err)
	}
	rootStore, err := blob.New(blob.Config{Endpoint: flags[len(flags)-1], Region: "us-east-1"}.WithKeys(root))
	if err != nil {
		t.Fatal(err)
	}
	if left, err := rootStore.List(context.Background(), blob.DefaultUploadBucket, "kernels/"); err != nil || len(left) != 0 {
		t.Errorf("kernel uploads left behind: %v %v", left, err)
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
