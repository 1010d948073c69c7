package launcher_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/slipway/slipway/pkg/testenv"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/services/launcher"
	"github.com/slipway/slipway/services/launcher/qemu"
)

// TestRestrictedAttributes: RAW and the host-path attributes are refused by default at
// create, update and instantiate to a user outside the oneadmin group, naming the
// attribute and the setting; a list that omits RAW allows it, but RAW still may not name
// host files; the oneadmin group may write them (a template keeps who wrote it).
func TestRestrictedAttributes(t *testing.T) {
	h := newHarness(t)
	disk := h.importFile(rawDisk(t, 1<<20, "r"), schemas.ImageCreate{Name: "r", Type: "OS"})
	plain := fmt.Sprintf("DISK = [ IMAGE_ID = %d ]\n", disk.ID)
	withRaw := plain + `RAW = [ TYPE = "kvm", DATA = "-device virtio-rng-pci" ]` + "\n"

	// The oneadmin group may.
	h.createTemplate("admin-raw", withRaw)
	// alice, a user, may not: from here on she sends.
	h.cli = testenv.NewUser(t, h.ctx, h.cli, h.url, "alice", "")
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "raw", Template: withRaw},
		`template "raw"`, "RAW is a restricted attribute", launcher.EnvRestrictedAttr)
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "emu", Template: plain + `EMULATOR = "/tmp/q"` + "\n"},
		"EMULATOR is a restricted attribute", launcher.EnvRestrictedAttr)
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "src", Template: `DISK = [ IMAGE_ID = 1, SOURCE = "/etc/shadow" ]` + "\n"},
		"DISK/SOURCE is a restricted attribute")
	tid := h.createTemplate("plain", plain)
	h.refused(schemas.CommandLauncherTemplateUpdate, schemas.LauncherTemplateUpdate{ID: tid, Template: withRaw},
		"RAW is a restricted attribute", launcher.EnvRestrictedAttr)

	// The operator allows RAW (the list omits it): accepted, but not a host file.
	h.stopLauncher()
	h.lcfg.RestrictedAttr = "EMULATOR,DISK/SOURCE"
	h.startLauncher()
	rawID := h.createTemplate("raw", withRaw)
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "shadow",
		Template: plain + `RAW = [ TYPE = "kvm", DATA = "-drive file=/etc/shadow,if=virtio" ]` + "\n"},
		"RAW: -drive is refused")
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "rom",
		Template: plain + `RAW = "-device e1000,romfile=shadow"` + "\n"}, "property romfile")
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "sh",
		Template: plain + `RAW = "-device e1000; cat /etc/shadow"` + "\n"}, "not a shell command line")
	h.refused(schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: "emu2", Template: plain + `EMULATOR = "/tmp/q"` + "\n"},
		"EMULATOR is a restricted attribute")

	// Back to the default: the template accepted before cannot be instantiated.
	h.stopLauncher()
	h.lcfg.RestrictedAttr = ""
	h.startLauncher()
	h.refused(schemas.CommandLauncherInstantiate, schemas.LauncherInstantiate{TemplateID: rawID},
		"RAW is a restricted attribute", launcher.EnvRestrictedAttr)

	// A bad list is a start-up error naming the setting.
	bad := launcher.Config{RestrictedAttr: "RAW,os.kernel"}
	if _, err := launcherConfigError(bad); err == nil || !strings.Contains(err.Error(), launcher.EnvRestrictedAttr) {
		t.Errorf("a bad %s: %v", launcher.EnvRestrictedAttr, err)
	}
}

// launcherConfigError reads a configuration through the environment, as the command does.
func launcherConfigError(c launcher.Config) (launcher.Config, error) {
	os.Setenv(launcher.EnvRestrictedAttr, c.RestrictedAttr)
	defer os.Unsetenv(launcher.EnvRestrictedAttr)
	return launcher.ConfigFromEnv()
}

// TestConfinedVMs boots two VMs while this process (the launcher's) holds a secret-looking
// variable, one with an allowed RAW, and reads /proc for each QEMU: -sandbox and the RAW
// words on the command line, an empty environment, a uid of its own that is not 0, which
// cannot read the other VM's directory nor write the image cache.
func TestConfinedVMs(t *testing.T) {
	needTools(t, "qemu-system-x86_64", "qemu-img")
	if os.Geteuid() != 0 {
		testenv.Skip(t, "QEMU runs as its own uid only when the launcher is root; this test runs as uid %d", os.Geteuid())
	}
	secret := "kek-" + testenv.Unique()
	t.Setenv("SLIPWAY_TEST_LUKS_KEK", secret)
	h := newHarness(t, func(c *launcher.Config) { c.RestrictedAttr = "EMULATOR" })
	kernel, initrd := bootImages(t, h, readyScript("confined", true))
	disk := h.importFile(rawDisk(t, 1<<20, "c"), schemas.ImageCreate{Name: "c", Type: "OS"})
	tpl := fmt.Sprintf(`DISK = [ IMAGE_ID = %d ]
OS = [ KERNEL_DS = "$FILE[IMAGE_ID=%d]", INITRD_DS = "$FILE[IMAGE_ID=%d]" ]
RAW = [ TYPE = "kvm", DATA = "-device 'virtio-rng-pci,id=rng0'" ]
`, disk.ID, kernel.ID, initrd.ID)
	tid := h.createTemplate("confined", tpl)
	a, b := h.instantiate(tid, "a"), h.instantiate(tid, "b")
	h.waitVM(a, schemas.VMStateRunning, bootTimeout)
	h.waitVM(b, schemas.VMStateRunning, bootTimeout)
	dirA, dirB := filepath.Join(h.work, "vms", fmt.Sprint(a)), filepath.Join(h.work, "vms", fmt.Sprint(b))
	uid := map[int64]uint32{}
	for id, dir := range map[int64]string{a: dirA, b: dirB} {
		pids := qemuPIDs(dir)
		if len(pids) != 1 {
			t.Fatalf("VM %d: QEMU processes %v", id, pids)
		}
		proc := "/proc/" + pids[0]
		cmdline, _ := os.ReadFile(proc + "/cmdline")
		for _, want := range []string{"\x00-sandbox\x00" + qemu.SandboxArg + "\x00", "\x00-device\x00virtio-rng-pci,id=rng0\x00"} {
			if !bytes.Contains(cmdline, []byte(want)) {
				t.Errorf("VM %d: QEMU's command line lacks %q: %q", id, want, cmdline)
			}
		}
		environ, err := os.ReadFile(proc + "/environ")
		if err != nil {
			t.Fatal(err)
		}
		if len(environ) != 0 || bytes.Contains(environ, []byte(secret)) {
			t.Errorf("VM %d: QEMU's environment is not empty: %q", id, environ)
		}
		st, err := os.Stat(proc)
		if err != nil {
			t.Fatal(err)
		}
		u := st.Sys().(*syscall.Stat_t).Uid
		if u == 0 {
			t.Fatalf("VM %d: QEMU runs as root", id)
		}
		uid[id] = u
		if ds, err := os.Stat(dir); err != nil || ds.Sys().(*syscall.Stat_t).Uid != u || ds.Mode().Perm() != 0o700 {
			t.Errorf("VM %d: its directory is not its QEMU's alone (uid %d): %v %v", id, u, ds.Mode(), err)
		}
	}
	if uid[a] == uid[b] {
		t.Fatalf("both QEMU processes run as uid %d", uid[a])
	}
	as := func(u uint32, args ...string) error {
		c := exec.Command("/usr/bin/test", args...)
		c.Env = []string{}
		c.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: u, Gid: u, Groups: []uint32{}}}
		return c.Run()
	}
	overlayB := filepath.Join(dirB, "disk-0.qcow2")
	if as(uid[a], "-r", overlayB) == nil || as(uid[a], "-x", dirB) == nil {
		t.Errorf("VM %d's QEMU uid can reach VM %d's directory", a, b)
	}
	if err := as(uid[b], "-r", overlayB); err != nil {
		t.Errorf("VM %d's QEMU uid cannot read its own overlay: %v", b, err)
	}
	blobs, _ := filepath.Glob(filepath.Join(h.work, "cache", "image-*"))
	if len(blobs) == 0 {
		t.Fatal("no cached image")
	}
	for _, f := range blobs {
		if as(uid[a], "-r", f) != nil || as(uid[a], "-w", f) == nil {
			t.Errorf("cached image %s: QEMU's uid must read it and not write it", f)
		}
	}
	if as(uid[a], "-w", filepath.Join(h.work, "cache")) == nil {
		t.Error("QEMU's uid can write in the image cache")
	}
	for _, id := range []int64{a, b} {
		h.mustCall(schemas.CommandLauncherTerminate, schemas.VMAction{ID: id, Hard: true}, schemas.EventLauncherVMStateChanged)
	}
	for _, id := range []int64{a, b} {
		h.waitFinal(id)
	}
	h.noQEMULeft()
}
