package launcher_test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/kernel-registry/deb"
	"github.com/slipway/slipway/services/kernel-registry/initrd"
	"github.com/slipway/slipway/services/launcher"
)

// filesDSScript is the guest of TestFilesDSThroughCatalog: it loads the
// virtio and ISO 9660 modules, finds the context CD-ROM (the read-only
// virtio disk after the root disk), mounts it and prints every file on it
// between markers, then powers off.
const filesDSScript = `#!/bin/busybox sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t sysfs sys /sys
/bin/busybox mount -t devtmpfs dev /dev
for m in $(/bin/busybox cat /etc/slipway-initrd/modules); do /bin/busybox insmod $m; done
echo "` + launcher.ReadyLine + ` pid=$$ cmd=/init"
/bin/busybox mkdir -p /mnt/ctx
n=0
while [ ! -b /dev/vdb ] && [ $n -lt 50 ]; do /bin/busybox sleep 0.2; n=$((n+1)); done
/bin/busybox mount -t iso9660 -o ro /dev/vdb /mnt/ctx || echo "mount failed"
for f in /mnt/ctx/*; do echo "file=$(/bin/busybox basename $f)"; echo "<<<"; /bin/busybox cat $f; echo ">>>"; done
/bin/busybox poweroff -f
`

// moduleInitrd builds an initramfs whose /init is script, with busybox and
// Debian's modules for virtio disks and ISO 9660 (listed in load order in
// initrd.ModuleList), taken from bin/kernel/linux-image.deb.
func moduleInitrd(t *testing.T, script string) string {
	t.Helper()
	pkg := testenv.RepoFile(t, "bin/kernel/linux-image.deb", "run `make kernel`")
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		testenv.Skip(t, "a static busybox is needed at /bin/busybox (busybox-static): %v", err)
	}
	f, err := os.Open(pkg)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dir := t.TempDir()
	k, err := deb.Extract(f, dir, deb.Limits{})
	if err != nil || k.ModulesDir == "" {
		t.Fatalf("extract %s: %+v %v", pkg, k, err)
	}
	initFile := filepath.Join(t.TempDir(), "init")
	if err := os.WriteFile(initFile, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "initrd.gz")
	var buf bytes.Buffer
	res, err := initrd.Build(&buf, initrd.Options{ModulesDir: k.ModulesDir, Init: initFile,
		Modules: []string{"virtio_pci", "virtio_blk", "iso9660"},
		Extra:   []initrd.File{{Path: "/bin/busybox", Mode: 0o755, Data: bb}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("guest initrd: modules %v (built in %v), %d bytes", res.Modules, res.Builtin, res.Bytes)
	if err := os.WriteFile(out, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	// The extracted package is large: free it now, not at the end.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestFilesDSThroughCatalog is FILES_DS end to end: two CONTEXT files are
// imported through the catalog, one into the files datastore and one into
// a FILE_DS the test creates (datastore-create), a VM template
// names them in CONTEXT/FILES_DS (by IMAGE_ID and by IMAGE), and the guest,
// booted by the real launcher under QEMU, mounts its context CD-ROM and
// prints both files' contents and context.sh.
func TestFilesDSThroughCatalog(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img", "genisoimage")
	h := newHarness(t)
	vmlinuz := testenv.RepoFile(t, "bin/kernel/vmlinuz", "run `make kernel`")
	kernel := h.importFile(vmlinuz, schemas.ImageCreate{Name: "vmlinuz", Type: "KERNEL", Datastore: "files"})
	rd := h.importFile(moduleInitrd(t, filesDSScript), schemas.ImageCreate{Name: "initrd", Type: "RAMDISK", Datastore: "files"})
	token := "files-ds-" + testenv.Unique()
	motd := testenv.WriteFile(t, filepath.Join(t.TempDir(), "motd"), "motd says "+token+"\n")
	conf := testenv.WriteFile(t, filepath.Join(t.TempDir(), "conf"), "setting=42\n")
	// motd lives in a FILE_DS created for the test (its own slipway-ds-*
	// bucket): the launcher reads it from there like any file image.
	if _, err := h.cli.Call(h.ctx, "catalog", schemas.CommandCatalogDatastoreCreate, schemas.DatastoreCreate{Template: fmt.Sprintf(
		"NAME = ctx\nTYPE = FILE_DS\nDS_MAD = s3\nBUCKET = \"slipway-ds-ctx-%s\"\n", strings.ToLower(h.sfx))},
		[]string{schemas.EventCatalogDatastoreCreated}); err != nil {
		t.Fatalf("datastore-create: %v", err)
	}
	motdImg := h.importFile(motd, schemas.ImageCreate{Name: "motd", Type: "CONTEXT", Datastore: "ctx"})
	confImg := h.importFile(conf, schemas.ImageCreate{Name: "app.conf", Type: "CONTEXT", Datastore: "files"})
	if !strings.HasPrefix(motdImg.Source, "s3://slipway-ds-ctx-") {
		t.Errorf("motd's blob is %s, want it in the created datastore's bucket", motdImg.Source)
	}
	for _, img := range []schemas.Image{kernel, rd, motdImg, confImg} {
		if img.State != "READY" {
			t.Fatalf("image %d (%s) is %s: %s", img.ID, img.Name, img.State, img.Error)
		}
	}
	disk := h.importFile(rawDisk(t, 1<<20, "root"), schemas.ImageCreate{Name: "root", Type: "OS"})
	tid := h.createTemplate("files-ds", fmt.Sprintf(`NAME = "files-ds"
MEMORY = 256
DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]" ]
CONTEXT = [ TOKEN = "%s", FILES_DS = "$FILE[IMAGE_ID=%d] $FILE[IMAGE=\"app.conf\"]" ]
`, disk.ID, kernel.ID, rd.ID, token, motdImg.ID))
	id := h.instantiate(tid, "")
	h.waitVM(id, schemas.VMStatePoweroff, bootTimeout)
	console := h.console(id)
	for _, want := range []string{
		"file=motd\n<<<\nmotd says " + token + "\n>>>",
		"file=app.conf\n<<<\nsetting=42\n>>>",
		"TOKEN='" + token + "'",
	} {
		if !strings.Contains(strings.ReplaceAll(console, "\r", ""), want) {
			t.Errorf("console lacks %q:\n%s", want, console)
		}
	}
	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id}, schemas.EventLauncherVMStateChanged)
	h.waitVM(id, schemas.VMStateDone, time.Minute)
	h.noQEMULeft()
}
