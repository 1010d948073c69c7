package launcher_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// bootImages imports what a boot needs: Debian's kernel as a KERNEL image,
// an initramfs whose /init is script as a RAMDISK image.
func bootImages(t *testing.T, h *harness, script string) (kernel, initrd schemas.Image) {
	t.Helper()
	vmlinuz := testenv.RepoFile(t, "bin/kernel/vmlinuz", "run `make kernel`")
	kernel = h.importFile(vmlinuz, schemas.ImageCreate{Name: "vmlinuz", Type: "KERNEL", Datastore: "files"})
	initrd = h.importFile(initramfs(t, script), schemas.ImageCreate{Name: "initrd", Type: "RAMDISK", Datastore: "files"})
	for _, img := range []schemas.Image{kernel, initrd} {
		if img.State != "READY" {
			t.Fatalf("image %d (%s) is %s: %s", img.ID, img.Name, img.State, img.Error)
		}
	}
	return kernel, initrd
}

// readyScript is a guest init: it says it is ready, prints token, then
// powers off unless stay (then it idles, ignoring ACPI requests).
func readyScript(token string, stay bool) string {
	end := "/bin/busybox poweroff -f\n"
	if stay {
		end = "while true; do /bin/busybox sleep 1; done\n"
	}
	return "#!/bin/busybox sh\n/bin/busybox mount -t proc proc /proc\n" +
		"echo \"" + launcher.ReadyLine + " pid=$$ cmd=/init\"\necho \"token=" + token + "\"\n" + end
}

func TestBootPowerOffResumeTerminate(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	h := newHarness(t)
	token := "tok-" + testenv.Unique()
	kernel, initrd := bootImages(t, h, readyScript(token, false))
	disk := h.importFile(rawDisk(t, 4<<20, "disk-zero"), schemas.ImageCreate{Name: "disk", Type: "OS"})
	tid := h.createTemplate("boot", fmt.Sprintf(`NAME = "boot"
VCPU = 1
MEMORY = 256
DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE=\"initrd\"]", ROOT = "vda", KERNEL_CMD = "loglevel=4" ]
CONTEXT = [ GREETING = "hello", TOKEN = "%s" ]
`, disk.ID, kernel.ID, token))

	id := h.instantiate(tid, "")
	vm := h.waitVM(id, schemas.VMStatePoweroff, bootTimeout)
	want := []string{"PENDING", "PROLOG", "BOOT", "RUNNING", "POWEROFF"}
	if got := h.states(id); !slices.Equal(got, want) {
		t.Fatalf("states %v, want %v", got, want)
	}
	if vm.Name != fmt.Sprintf("boot-%d", id) || vm.TemplateID != tid || len(vm.Disks) != 1 {
		t.Fatalf("VM record: %+v", vm)
	}
	d := vm.Disks[0]
	if d.ImageID != disk.ID || d.Target != "vda" || d.Bus != "virtio" || d.Persistent || d.Format != "raw" {
		t.Errorf("disk: %+v", d)
	}
	if vm.Kernel == nil || vm.Kernel.ImageID != kernel.ID || vm.Kernel.BootMode != schemas.VMBootModeLinux ||
		vm.Initrd == nil || vm.Initrd.ImageID != initrd.ID {
		t.Errorf("kernel %+v initrd %+v", vm.Kernel, vm.Initrd)
	}
	if acc, err := qemu.ProbeOnce(h.ctx, qemu.ProbeConfig{}); err != nil || vm.Accelerator == nil ||
		string(vm.Accelerator.Accel) != acc.Accel || vm.Accelerator.Cpu != acc.CPU || len(vm.Accelerator.PassedOver) != len(acc.PassedOver) {
		t.Errorf("VM ran with %+v; the probe chose %+v (%v)", vm.Accelerator, acc, err)
	}
	if !strings.HasPrefix(vm.Cmdline, "console=ttyS0 root=/dev/vda rw panic=-1 loglevel=4") {
		t.Errorf("cmdline %q", vm.Cmdline)
	}
	console := h.console(id)
	if !strings.Contains(console, "token="+token) || !strings.Contains(console, launcher.ReadyLine+" pid=1") {
		t.Fatalf("console lacks the token or the ready line:\n%s", console)
	}
	if img := h.image(disk.ID); img.State != "USED" || img.RVMs != 1 {
		t.Errorf("disk image while the VM is POWEROFF: %s rvms %d, want USED 1", img.State, img.RVMs)
	}
	h.noQEMULeft()

	// resume boots the same disks again.
	h.mustCall(schemas.CommandLauncherResume, schemas.LauncherResume{ID: id}, schemas.EventLauncherVMStateChanged)
	deadline := time.Now().Add(bootTimeout)
	for strings.Count(h.console(id), "token="+token) < 2 || h.vm(id).State != schemas.VMStatePoweroff {
		if time.Now().After(deadline) {
			t.Fatalf("the resumed VM did not print its token and power off again: %s\n%s", h.vm(id).State, h.console(id))
		}
		time.Sleep(500 * time.Millisecond)
	}

	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id}, schemas.EventLauncherVMStateChanged)
	h.waitVM(id, schemas.VMStateDone, time.Minute)
	want = append(want, "BOOT", "RUNNING", "POWEROFF", "EPILOG", "DONE")
	if got := h.states(id); !slices.Equal(got, want) {
		t.Errorf("states %v, want %v", got, want)
	}
	if img := h.image(disk.ID); img.State != "READY" || img.RVMs != 0 {
		t.Errorf("disk image after terminate: %s rvms %d, want READY 0", img.State, img.RVMs)
	}
	if _, err := os.Stat(filepath.Join(h.work, "vms", fmt.Sprint(id))); !os.IsNotExist(err) {
		t.Errorf("the VM's directory is still there: %v", err)
	}
	if !strings.Contains(h.console(id), token) {
		t.Error("the console log is gone after DONE")
	}
	// A DONE VM is not terminated twice.
	if _, err := h.call(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id}, schemas.EventLauncherVMStateChanged); !bus.IsCallError(err) ||
		!strings.Contains(err.Error(), "DONE") {
		t.Errorf("terminate of a DONE VM: %v", err)
	}
	h.noQEMULeft()
}

func TestPersistentDiskSnapshotSaveAsRestart(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	// Every qemu-img call of the launcher goes through the shared confined
	// runner, with Config.QEMUImg as its binary: checked at the end.
	qemuImgBin, qemuImgLog := recordingQemuImg(t)
	h := newHarness(t, func(c *launcher.Config) { c.QEMUImg = qemuImgBin })
	kernel, initrd := bootImages(t, h, readyScript("stay", true))
	shared := h.importFile(rawDisk(t, 4<<20, "shared-disk"), schemas.ImageCreate{Name: "shared", Type: "DATABLOCK"})
	pers := h.importFile(rawDisk(t, 8<<20, "persistent-disk"), schemas.ImageCreate{Name: "pers", Type: "OS",
		Persistent: true, Format: "qcow2"})
	if pers.Format != "qcow2" || !pers.Persistent {
		t.Fatalf("persistent image: %+v", pers)
	}
	tid := h.createTemplate("pers", fmt.Sprintf(`NAME = pers
DISK = [ IMAGE_ID = %d ]
DISK = [ IMAGE = "pers" ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]" ]
`, shared.ID, kernel.ID, initrd.ID))

	a := h.instantiate(tid, "a")
	vm := h.waitVM(a, schemas.VMStateRunning, bootTimeout)
	if vm.Disks[1].Target != "vdb" || !vm.Disks[1].Persistent || vm.Disks[1].Format != "qcow2" {
		t.Errorf("persistent disk: %+v", vm.Disks[1])
	}
	if img := h.image(pers.ID); img.State != "USED_PERS" || img.RVMs != 1 {
		t.Fatalf("persistent image: %s rvms %d", img.State, img.RVMs)
	}

	// A second VM is refused the persistent image; the shared disk it
	// locked first is released again.
	b := h.instantiate(tid, "b")
	vb := h.waitFinal(b)
	if vb.State != schemas.VMStateFailed || !strings.Contains(vb.Error, "DISK 1:") || !strings.Contains(vb.Error, fmt.Sprint(a)) {
		t.Errorf("second VM: %s %q", vb.State, vb.Error)
	}
	if img := h.image(shared.ID); img.State != "USED" || img.RVMs != 1 {
		t.Errorf("shared image after the refused VM: %s rvms %d, want USED 1", img.State, img.RVMs)
	}

	// Snapshots: the running persistent qcow2 disk through QMP; the
	// non-persistent one is refused.
	h.mustCall(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: a, DiskID: 1, Name: "live"}, schemas.EventLauncherDiskSnapshotted)
	if _, err := h.call(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: a, DiskID: 0, Name: "x"}, schemas.EventLauncherDiskSnapshotted); !bus.IsCallError(err) ||
		!strings.Contains(err.Error(), "not persistent") {
		t.Errorf("snapshot of a non-persistent disk: %v", err)
	}

	// save-as of the running VM's overlay.
	m := h.mustCall(schemas.CommandLauncherDiskSaveAs, schemas.LauncherDiskSaveAs{ID: a, DiskID: 0, Name: "saved"}, schemas.EventLauncherDiskSaved)
	var saved schemas.LauncherDiskSaved
	mustJSON(t, m.Data, &saved)
	img := h.waitImage(saved.ImageID, func(i schemas.Image) bool { return i.State != "LOCKED" }, "settled")
	if img.State != "READY" || img.Format != "qcow2" || img.Type != "DATABLOCK" {
		t.Fatalf("saved image: %+v", img)
	}
	if got := blobPrefix(t, h, img.Source, "qcow2", len("shared-disk")); got != "shared-disk" {
		t.Errorf("saved image starts with %q, want the disk's content", got)
	}
	if h.vm(a).State != schemas.VMStateRunning {
		t.Errorf("VM after save-as: %s, want RUNNING (resumed after the copy)", h.vm(a).State)
	}
	// The shared image showed LOCKED_USED while its VM's disk was copied.
	for _, to := range []string{`"from":"USED","to":"LOCKED_USED"`, `"from":"LOCKED_USED","to":"USED"`} {
		h.rec.Wait(t, "shared image "+to, func(m *nats.Msg) bool {
			return m.Subject == fmt.Sprintf("slipway.evt.catalog.state-changed.%d", shared.ID) && strings.Contains(string(m.Data), to)
		})
	}

	// The launcher stops: QEMU goes with it, the VM is POWEROFF, its locks
	// kept; a new launcher carries on.
	h.stopLauncher()
	h.noQEMULeft()
	h.startLauncher()
	vm = h.waitVM(a, schemas.VMStatePoweroff, time.Minute)
	if !strings.Contains(vm.Reason, "launcher") {
		t.Errorf("reason %q", vm.Reason)
	}
	if img := h.image(pers.ID); img.State != "USED_PERS" {
		t.Errorf("persistent image after the restart: %s", img.State)
	}
	if _, err := h.call(schemas.CommandLauncherPoweroff, schemas.VMAction{ID: a}, schemas.EventLauncherVMStateChanged); !bus.IsCallError(err) {
		t.Errorf("poweroff of a POWEROFF VM: %v", err)
	}
	// Snapshot of the powered-off disk with qemu-img.
	h.mustCall(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: a, DiskID: 1, Name: "off"}, schemas.EventLauncherDiskSnapshotted)
	// A third one, then back to "off" (qemu-img snapshot -a, the VM being
	// powered off): "tmp" is left a leaf that is not active.
	h.mustCall(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: a, DiskID: 1, Name: "tmp"}, schemas.EventLauncherDiskSnapshotted)
	if got := diskTree(h.vm(a).Disks[1].SnapshotTree); got != "0:live<-1 1:off<0 2:tmp<1*" {
		t.Errorf("tree after three snapshots: %s", got)
	}
	m = h.mustCall(schemas.CommandLauncherDiskSnapshotRevert, schemas.LauncherDiskSnapshotRevert{ID: a, DiskID: 1, Snapshot: 1}, schemas.EventLauncherDiskSnapshotChanged)
	var changed schemas.LauncherDiskSnapshotChanged
	mustJSON(t, m.Data, &changed)
	if got := diskTree(changed.Snapshots); got != "0:live<-1 1:off<0* 2:tmp<1" || changed.Op != schemas.SnapshotOpRevert {
		t.Errorf("revert answered %+v (%s)", changed, got)
	}
	for _, c := range []struct {
		verb string
		req  any
		want string
	}{
		{schemas.CommandLauncherDiskSnapshotDelete, schemas.LauncherDiskSnapshotDelete{ID: a, DiskID: 1, Snapshot: 1}, "snapshot 1 (off) is active"},
		{schemas.CommandLauncherDiskSnapshotDelete, schemas.LauncherDiskSnapshotDelete{ID: a, DiskID: 1, Snapshot: 0}, "snapshot 0 (live) has children (1)"},
		{schemas.CommandLauncherDiskSnapshotRevert, schemas.LauncherDiskSnapshotRevert{ID: a, DiskID: 1, Snapshot: 7}, "snapshot 7 does not exist (snapshots: 0, 1, 2)"},
		{schemas.CommandLauncherDiskSnapshotRevert, schemas.LauncherDiskSnapshotRevert{ID: a, DiskID: 0, Snapshot: 0}, "DISK 0 of VM"},
	} {
		if _, err := h.call(c.verb, c.req, schemas.EventLauncherDiskSnapshotChanged); !bus.IsCallError(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s %+v: %v, want %q", c.verb, c.req, err, c.want)
		}
	}

	// Boot again, and power off gently: the guest ignores ACPI, so QEMU
	// is stopped after the shutdown timeout.
	h.mustCall(schemas.CommandLauncherResume, schemas.LauncherResume{ID: a}, schemas.EventLauncherVMStateChanged)
	h.waitVM(a, schemas.VMStateRunning, bootTimeout)
	// Running: revert is refused (OpenNebula asks for POWEROFF), delete
	// goes through QMP.
	if _, err := h.call(schemas.CommandLauncherDiskSnapshotRevert, schemas.LauncherDiskSnapshotRevert{ID: a, DiskID: 1, Snapshot: 0}, schemas.EventLauncherDiskSnapshotChanged); !bus.IsCallError(err) ||
		!strings.Contains(err.Error(), "needs the VM powered off") {
		t.Errorf("revert of a running VM's disk: %v", err)
	}
	h.mustCall(schemas.CommandLauncherDiskSnapshotDelete, schemas.LauncherDiskSnapshotDelete{ID: a, DiskID: 1, Snapshot: 2}, schemas.EventLauncherDiskSnapshotChanged)
	h.mustCall(schemas.CommandLauncherPoweroff, schemas.VMAction{ID: a}, schemas.EventLauncherVMStateChanged)
	vm = h.vm(a)
	if vm.State != schemas.VMStatePoweroff || !strings.Contains(vm.Reason, "did not power off") {
		t.Errorf("gentle poweroff: %s %q", vm.State, vm.Reason)
	}
	// Powered off, a delete goes through qemu-img: take "tmp2" (ID 3: the
	// deleted 2, the highest, is not given again, as in OpenNebula), go
	// back to "off", delete "tmp2".
	h.mustCall(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: a, DiskID: 1, Name: "tmp2"}, schemas.EventLauncherDiskSnapshotted)
	if got := diskTree(h.vm(a).Disks[1].SnapshotTree); got != "0:live<-1 1:off<0 3:tmp2<1*" {
		t.Errorf("tree after a snapshot taken once the highest was deleted: %s", got)
	}
	h.mustCall(schemas.CommandLauncherDiskSnapshotRevert, schemas.LauncherDiskSnapshotRevert{ID: a, DiskID: 1, Snapshot: 1}, schemas.EventLauncherDiskSnapshotChanged)
	h.mustCall(schemas.CommandLauncherDiskSnapshotDelete, schemas.LauncherDiskSnapshotDelete{ID: a, DiskID: 1, Snapshot: 3}, schemas.EventLauncherDiskSnapshotChanged)
	if d := h.vm(a).Disks[1]; diskTree(d.SnapshotTree) != "0:live<-1 1:off<0*" || d.NextSnapshot != 4 {
		t.Errorf("tree after the offline delete: %s, next_snapshot %d (want 4)", diskTree(d.SnapshotTree), d.NextSnapshot)
	}

	// Terminate it gently while it runs: the guest ignores ACPI again, and
	// the wait for it (5s) outlasts the launcher's bookkeeping time (2s,
	// shortened here), which the epilog must not inherit spent.
	h.mustCall(schemas.CommandLauncherResume, schemas.LauncherResume{ID: a}, schemas.EventLauncherVMStateChanged)
	h.waitVM(a, schemas.VMStateRunning, bootTimeout)
	restore := launcher.SetSettleTimeout(2 * time.Second)
	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: a}, schemas.EventLauncherVMStateChanged)
	vm = h.waitVM(a, schemas.VMStateDone, 2*time.Minute)
	restore()
	if !strings.Contains(vm.Reason, "did not power off") {
		t.Errorf("gentle terminate: reason %q", vm.Reason)
	}
	after := h.waitImage(pers.ID, func(i schemas.Image) bool { return i.State == "READY" }, "READY")
	if after.RVMs != 0 || after.SHA256 == pers.SHA256 {
		t.Errorf("persistent image after terminate: rvms %d sha256 %s (before %s): want 0 and a new blob", after.RVMs, after.SHA256, pers.SHA256)
	}
	if snaps := blobSnapshots(t, h, after.Source); !strings.Contains(snaps, "live") || !strings.Contains(snaps, "off") || strings.Contains(snaps, "tmp") {
		t.Errorf("the written-back disk does not hold live and off only:\n%s", snaps)
	}
	// The disk's tree became the image's, with its counter.
	if got := diskTree(after.Snapshots); got != "0:live<-1 1:off<0*" || after.NextSnapshot != 4 {
		t.Errorf("the image's snapshots: %s, next_snapshot %d (want 4)", got, after.NextSnapshot)
	}
	if img := h.image(shared.ID); img.State != "READY" || img.RVMs != 0 {
		t.Errorf("shared image: %s rvms %d", img.State, img.RVMs)
	}
	if !strings.Contains(vm.Reason, "saved to image") {
		t.Errorf("DONE reason %q", vm.Reason)
	}
	left, _ := h.blobs.List(h.ctx, h.uploads, "vms/")
	if len(left) > 0 {
		t.Errorf("staged objects left in the upload bucket: %v", left)
	}
	h.noQEMULeft()
	// The overlay of disk 0 (PROLOG), the save-as copy, the snapshot of the
	// powered-off disk and the persistent disk's size (EPILOG).
	checkQemuImgConfined(t, qemuImgLog, "create", "convert", "snapshot", "info")

	// The next VM's disk starts from the image's counter: its first
	// snapshot is 4, not 2 (one more than the highest the image holds).
	c := h.instantiate(tid, "c")
	if d := h.waitVM(c, schemas.VMStateRunning, bootTimeout).Disks[1]; d.NextSnapshot != 4 || diskTree(d.SnapshotTree) != "0:live<-1 1:off<0*" {
		t.Errorf("the next VM's disk: tree %s, next_snapshot %d (want 4)", diskTree(d.SnapshotTree), d.NextSnapshot)
	}
	h.mustCall(schemas.CommandLauncherDiskSnapshot, schemas.LauncherDiskSnapshot{ID: c, DiskID: 1, Name: "again"}, schemas.EventLauncherDiskSnapshotted)
	if got := diskTree(h.vm(c).Disks[1].SnapshotTree); got != "0:live<-1 1:off<0 4:again<1*" {
		t.Errorf("the next VM's snapshot: %s, want ID 4", got)
	}
	h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: c, Hard: true}, schemas.EventLauncherVMStateChanged)
	h.waitVM(c, schemas.VMStateDone, 2*time.Minute)
	h.noQEMULeft()
}

// diskTree renders a snapshot tree: "id:name<parent", * for the active one.
func diskTree(tree []schemas.ImageSnapshot) string {
	var parts []string
	for _, s := range tree {
		p := fmt.Sprintf("%d:%s<%d", s.ID, s.Name, s.Parent)
		if s.Active {
			p += "*"
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, " ")
}

// waitFinal waits until VM id is DONE or FAILED.
func (h *harness) waitFinal(id int64) (vm schemas.VM) {
	h.t.Helper()
	final := func() bool {
		vm = h.vm(id)
		return vm.State == schemas.VMStateFailed || vm.State == schemas.VMStateDone
	}
	if !testenv.Eventually(time.Minute, 100*time.Millisecond, final) {
		h.t.Fatalf("VM %d still %s", id, vm.State)
	}
	return vm
}

// download fetches an s3:// object into a temp file.
func download(t *testing.T, h *harness, url string) string {
	t.Helper()
	return testenv.Download(t, h.ctx, h.blobs, url, filepath.Join(t.TempDir(), "blob"))
}

// blobPrefix returns the first n bytes of the disk stored at url.
func blobPrefix(t *testing.T, h *harness, url, format string, n int) string {
	t.Helper()
	src := download(t, h, url)
	raw := filepath.Join(t.TempDir(), "raw")
	testenv.Exec(t, "qemu-img", "convert", "-f", format, "-O", "raw", src, raw)
	b, err := os.ReadFile(raw)
	if err != nil {
		t.Fatal(err)
	}
	return string(b[:min(n, len(b))])
}

// blobSnapshots lists the internal snapshots of the qcow2 stored at url.
func blobSnapshots(t *testing.T, h *harness, url string) string {
	t.Helper()
	out, err := exec.Command("qemu-img", "snapshot", "-l", download(t, h, url)).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img snapshot -l: %v: %s", err, out)
	}
	return string(out)
}
