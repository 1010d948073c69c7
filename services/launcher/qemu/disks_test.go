package qemu

import (
	"context"

	goqemu "github.com/digitalocean/go-qemu/qemu"
	"github.com/digitalocean/go-qemu/qmp/raw"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// blockByNode indexes query-block by node name.
func blockByNode(t *testing.T, vm *VM) map[string]BlockInfo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocks, err := vm.QueryBlock(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]BlockInfo{}
	for _, b := range blocks {
		m[b.NodeName] = b
	}
	return m
}

// TestDisks attaches a disk on every bus, CDROMs, a LUKS disk and a qcow2 overlay over a
// LUKS base, and checks on the QEMU side (query-block) how each was opened. The VM is
// started paused (-S): the checks need no guest.
func TestDisks(t *testing.T) {
	needQEMU(t)
	dir := runDir(t)
	img := t.TempDir()
	raw := filepath.Join(img, "raw.img")
	roImg := filepath.Join(img, "ro.img")
	qcow := filepath.Join(img, "disk.qcow2")
	cd := filepath.Join(img, "cd.iso")
	luks := filepath.Join(img, "enc.luks")
	base := filepath.Join(img, "base.luks")
	overlay := filepath.Join(img, "over.qcow2")
	sec := secretFile(t, img, "enc.pass", "correct horse")
	bsec := secretFile(t, img, "base.pass", "battery staple")
	qemuImg(t, "create", "-q", "-f", "raw", raw, "8M")
	qemuImg(t, "create", "-q", "-f", "raw", roImg, "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", qcow, "8M")
	qemuImg(t, "create", "-q", "-f", "raw", cd, "2M")
	makeLUKS(t, luks, sec, "8M")
	makeLUKS(t, base, bsec, "8M")
	ctx := testCtx(t, 2*time.Minute)
	if err := CreateOverlay(ctx, nil, overlay, base, FormatLUKS, 8<<20); err != nil {
		t.Fatal(err)
	}
	if name, format, err := qcow2Backing(overlay); err != nil || name != base || format != "luks" {
		t.Fatalf("overlay header: backing %q format %q, %v", name, format, err)
	}
	// Known data in the LUKS images, written through their own decryption.
	qemuIO(t, luks, sec, "write -P 0x5a 0 64k")
	qemuIO(t, base, bsec, "write -P 0x3c 0 64k")
	disks := []Disk{
		{Path: raw, Bus: BusVirtio, Serial: "raw-serial"},
		{Path: qcow, Format: FormatQcow2, Bus: BusSCSI},
		{Path: cd, Bus: BusIDE, Media: MediaCDROM},
		{Path: cd, Bus: BusSCSI, Media: MediaCDROM, ID: "scsicd"},
		{Path: luks, Format: FormatLUKS, Bus: BusIDE, SecretFile: sec},
		{Path: overlay, Format: FormatQcow2, Bus: BusVirtio, BackingSecretFile: bsec, ID: "over"},
		{Path: roImg, Bus: BusVirtio, ReadOnly: true, ID: "ro"},
	}
	nics := []NIC{{User: true, MAC: "52:54:00:AB:CD:01"}, {Model: "e1000"}}
	vm, err := Start(ctx, Config{Name: "disks", RunDir: dir, VMDir: img, Disks: disks, NICs: nics, ExtraArgs: []string{"-S"}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	for _, a := range vm.Args() {
		if strings.Contains(a, "correct horse") || strings.Contains(a, "battery staple") {
			t.Fatalf("a passphrase is on QEMU's command line: %s", a)
		}
	}
	if st, err := vm.Status(ctx); err != nil || st != "prelaunch" {
		t.Fatalf("Status = %q, %v; want prelaunch", st, err)
	}
	m := blockByNode(t, vm)
	check := func(node, driver string, ro, enc, removable bool, qdev string) {
		t.Helper()
		b, ok := m[node]
		if !ok {
			t.Errorf("no block node %s in %v", node, m)
			return
		}
		if b.Driver != driver || b.ReadOnly != ro || b.Encrypted != enc || b.Removable != removable || b.QdevID != qdev {
			t.Errorf("%s: %+v; want driver %s ro %v encrypted %v removable %v qdev %s", node, b, driver, ro, enc, removable, qdev)
		}
	}
	check("disk0", "raw", false, false, false, "disk0-dev")
	check("disk1", "qcow2", false, false, false, "disk1-dev")
	check("disk2", "raw", true, false, true, "disk2-dev")
	check("scsicd", "raw", true, false, true, "scsicd-dev")
	check("disk4", "luks", false, true, false, "disk4-dev")
	check("over", "qcow2", false, false, false, "over-dev")
	check("ro", "raw", true, false, false, "ro-dev")
	if b := m["over"]; b.BackingDriver != "luks" || !strings.Contains(b.BackingFile, base) {
		t.Errorf("overlay backing = %s %s, want luks %s", b.BackingDriver, b.BackingFile, base)
	}
	checkDeviceTypes(t, vm)
	checkNICs(t, vm)
	// The VM reads the plaintext through its node graph, and writes to the overlay go to
	// the overlay only.
	hmpIO(t, vm, "disk4", "read -P 0x5a 0 64k")
	hmpIO(t, vm, "over", "read -P 0x3c 0 64k")
	hmpIO(t, vm, "-d /machine/peripheral/over-dev/virtio-backend", "write -P 0xa5 0 4k") // through the guest device
	hmpIO(t, vm, "-d /machine/peripheral/over-dev/virtio-backend", "read -P 0xa5 0 4k")
	// Internal snapshots: a qcow2 disk takes one; raw refuses with QEMU's reason.
	if err := vm.SnapshotInternal(ctx, "disk1", "snap1"); err != nil {
		t.Fatal(err)
	}
	if err := vm.SnapshotInternal(ctx, "disk0", "snap1"); err == nil || !strings.Contains(err.Error(), "does not support internal snapshots") {
		t.Errorf("snapshot of a raw disk = %v", err)
	}
	if err := vm.Quit(ctx, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	assertNoQEMU(t, dir)
	qemuImg(t, "check", "-q", qcow)
	qemuIO(t, base, bsec, "read -P 0x3c 0 64k") // the base is unchanged
	// The overlay holds the VM's write; the rest still reads through to the base.
	chain := "driver=qcow2,file.filename=" + overlay + ",backing.driver=luks,backing.key-secret=s0,backing.file.filename=" + base
	qemuIOOpts(t, chain, bsec, "read -P 0xa5 0 4k")
	qemuIOOpts(t, chain, bsec, "read -P 0x3c 4k 60k")
	out, err := execOut("qemu-img", "snapshot", "-l", qcow)
	if err != nil || !strings.Contains(out, "snap1") {
		t.Errorf("snapshot list of %s: %v %s", qcow, err, out)
	}
}

// checkDeviceTypes reads each disk device's QOM type: the bus decides it.
func checkDeviceTypes(t *testing.T, vm *VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string]string{
		"disk0-dev": "virtio-blk-pci", "disk1-dev": "scsi-hd", "disk2-dev": "ide-cd",
		"scsicd-dev": "scsi-cd", "disk4-dev": "ide-hd", "over-dev": "virtio-blk-pci",
	}
	for id, typ := range want {
		var got string
		err := vm.Command(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/" + id, "property": "type"}, &got)
		if err != nil || got != typ {
			t.Errorf("device %s is %q (%v), want %s", id, got, err, typ)
		}
	}
}

// TestWrongPassphrase: a LUKS disk with the wrong passphrase makes Start fail with QEMU's
// own message, and no process is left.
func TestWrongPassphrase(t *testing.T) {
	needQEMU(t)
	dir := runDir(t)
	img := t.TempDir()
	luks := filepath.Join(img, "enc.luks")
	makeLUKS(t, luks, secretFile(t, img, "good", "the right one"), "4M")
	bad := secretFile(t, img, "bad", "the wrong one")
	ctx := testCtx(t, time.Minute)
	_, err := Start(ctx, Config{Name: "wrongpass", RunDir: dir, VMDir: img, ExtraArgs: []string{"-S"},
		Disks: []Disk{{Path: luks, Format: FormatLUKS, SecretFile: bad}}})
	if err == nil || !strings.Contains(err.Error(), "Invalid password, cannot unlock any keyslot") {
		t.Fatalf("Start = %v; want QEMU's invalid password message", err)
	}
	t.Logf("error: %v", err)
	assertNoQEMU(t, dir)
	// The same for the LUKS base of an overlay.
	over := filepath.Join(img, "over.qcow2")
	if err := CreateOverlay(ctx, nil, over, luks, FormatLUKS, 4<<20); err != nil {
		t.Fatal(err)
	}
	_, err = Start(ctx, Config{Name: "wrongpass2", RunDir: dir, VMDir: img, ExtraArgs: []string{"-S"},
		Disks: []Disk{{Path: over, Format: FormatQcow2, BackingSecretFile: bad}}})
	if err == nil || !strings.Contains(err.Error(), "Invalid password") {
		t.Fatalf("Start with a wrong backing passphrase = %v", err)
	}
	assertNoQEMU(t, dir)
	if ents, _ := os.ReadDir(dir); len(ents) != 1 || ents[0].Name() != "console.log" {
		t.Errorf("run dir holds %v; want only console.log", ents)
	}
}

// TestContextEndKills: ending Start's context kills QEMU.
func TestContextEndKills(t *testing.T) {
	needQEMU(t)
	dir := runDir(t)
	ctx, cancel := context.WithCancel(context.Background())
	vm, err := Start(ctx, Config{Name: "ctx", RunDir: dir, ExtraArgs: []string{"-S"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(qemuProcesses(dir)) != 1 {
		t.Fatalf("QEMU process not found by the scan")
	}
	// go-qemu's typed APIs run over the VM's monitor.
	st, err := raw.NewMonitor(vm.Monitor()).QueryStatus()
	if err != nil || st.Status != raw.RunStatePrelaunch {
		t.Fatalf("raw QueryStatus = %+v, %v", st, err)
	}
	dom, err := goqemu.NewDomain(vm.Monitor(), "ctx")
	if err != nil {
		t.Fatal(err)
	}
	if v, err := dom.Version(); err != nil || v == "" {
		t.Fatalf("Domain.Version = %q, %v", v, err)
	}
	cancel()
	select {
	case <-vm.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("QEMU still running after the context ended")
	}
	if err := vm.Wait(); err == nil {
		t.Error("Wait = nil for a killed QEMU")
	}
	if r := vm.ExitReason(); !strings.HasPrefix(r, "context ended") {
		t.Errorf("ExitReason = %q", r)
	}
	assertNoQEMU(t, dir)
}

func TestConfigErrors(t *testing.T) {
	dir := runDir(t)
	img := t.TempDir()
	raw := filepath.Join(img, "raw.img")
	if err := os.WriteFile(raw, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	loose := filepath.Join(img, "loose.pass")
	if err := os.WriteFile(loose, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	long := "/tmp/" + strings.Repeat("x", 110)
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "RunDir is required"},
		{Config{RunDir: filepath.Join(dir, "nope")}, "is not a directory"},
		{Config{RunDir: long}, "is not a directory"},
		{Config{RunDir: dir, Accel: "hvf"}, `accel "hvf" must be kvm or tcg`},
		{Config{RunDir: dir, MemoryMiB: 8}, "memory 8 MiB is too small"},
		{Config{RunDir: dir, Initrd: raw}, "without a kernel"},
		{Config{RunDir: dir, Kernel: filepath.Join(img, "none")}, "kernel:"},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, Format: "vmdk"}}}, `disk 0 (` + raw + `): format "vmdk" must be raw, qcow2 or luks`},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, Bus: "usb"}}}, `bus "usb" must be virtio, scsi or ide`},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, Format: FormatLUKS}}}, "a luks disk needs SecretFile"},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, Format: FormatLUKS, SecretFile: loose}}}, "must be 0600"},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, BackingSecretFile: loose}}}, "BackingSecretFile is only for qcow2 overlays"},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, ID: "a"}, {Path: raw, ID: "a"}}}, "ID a is used twice"},
		{Config{RunDir: dir, Disks: []Disk{{Path: raw, ID: "1a"}}}, `ID "1a" must be`},
		{Config{RunDir: dir, Disks: []Disk{{Path: filepath.Join(img, "missing")}}}, "no such file"},
		{Config{RunDir: dir, Disks: make7IDE(raw)}, "more than 6 IDE disks"},
		{Config{RunDir: dir, NICs: []NIC{{MAC: "zz"}}}, `MAC "zz"`},
	} {
		_, err := Start(context.Background(), tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Start(%+v) = %v, want %q", tc.cfg, err, tc.want)
		}
	}
	assertNoQEMU(t, dir)
}

func make7IDE(p string) []Disk {
	var d []Disk
	for range 7 {
		d = append(d, Disk{Path: p, Bus: BusIDE, ReadOnly: true})
	}
	return d
}

func TestBusForPrefix(t *testing.T) {
	for in, want := range map[string]string{"vda": BusVirtio, "sdb": BusSCSI, "hdc": BusIDE, "vd": BusVirtio} {
		if got, err := BusForPrefix(in); err != nil || got != want {
			t.Errorf("BusForPrefix(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := BusForPrefix("xvda"); err == nil {
		t.Error("xvda accepted")
	}
}

// qemuIO runs a qemu-io command on a LUKS image opened with its passphrase file.
func qemuIO(t *testing.T, path, secret, cmd string) {
	t.Helper()
	qemuIOOpts(t, "driver=luks,key-secret=s0,file.filename="+path, secret, cmd)
}

// qemuIOOpts runs a qemu-io command on an image given as --image-opts, with the secret s0.
func qemuIOOpts(t *testing.T, opts, secret, cmd string) {
	t.Helper()
	out, err := execOut("qemu-io", "--object", "secret,id=s0,format=raw,file="+secret,
		"--image-opts", opts, "-c", cmd)
	if err != nil || strings.Contains(out, "failed") || !strings.Contains(out, "bytes at offset") {
		t.Fatalf("qemu-io %s on %s: %v %s", cmd, opts, err, out)
	}
}

// hmpIO runs qemu-io inside the VM on a block node (HMP qemu-io, which prints on QEMU's
// stdout, kept by the VM) and fails on a pattern mismatch or an error.
func hmpIO(t *testing.T, vm *VM, node, cmd string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before := len(vm.out.String())
	var ret string
	err := vm.Command(ctx, "human-monitor-command", map[string]string{
		"command-line": "qemu-io " + node + " \"" + cmd + "\""}, &ret)
	out := vm.out.String()[before:] + ret
	for i := 0; i < 20 && !strings.Contains(out, "bytes at offset"); i++ {
		time.Sleep(100 * time.Millisecond) // stdout is a pipe: output may come late
		out = vm.out.String()[before:] + ret
	}
	if err != nil || !strings.Contains(out, "bytes at offset") || strings.Contains(out, "failed") {
		t.Fatalf("qemu-io %s %q in the VM: %v %q", node, cmd, err, out)
	}
}

func TestCreateOverlay(t *testing.T) {
	needQEMU(t)
	dir := t.TempDir()
	base := filepath.Join(dir, "base.raw")
	qemuImg(t, "create", "-q", "-f", "raw", base, "3M")
	over := filepath.Join(dir, "over.qcow2")
	ctx := testCtx(t, time.Minute)
	if err := CreateOverlay(ctx, nil, over, base, FormatRaw, 0); err != nil {
		t.Fatal(err)
	}
	if name, format, err := qcow2Backing(over); err != nil || name != base || format != "raw" {
		t.Fatalf("backing %q %q %v", name, format, err)
	}
	out, err := execOut("qemu-img", "info", "--output=json", over)
	if err != nil || !strings.Contains(out, `"virtual-size": 3145728`) {
		t.Fatalf("overlay size: %v %s", err, out)
	}
	for _, tc := range []struct {
		path, backing, format string
		size                  int64
		want                  string
	}{
		{over, base, FormatRaw, 0, "already exists"},
		{filepath.Join(dir, "a"), base, "vmdk", 0, `backing format "vmdk"`},
		{filepath.Join(dir, "b"), base, FormatLUKS, 0, "virtual size of a LUKS backing image must be given"},
		{filepath.Join(dir, "c"), filepath.Join(dir, "none"), FormatRaw, 0, "no such file"},
		{filepath.Join(dir, "d"), base, FormatQcow2, 0, "qemu-img create"}, // a raw file read as qcow2
		{"relative.qcow2", base, FormatRaw, 0, "not an absolute path"},
		{filepath.Join(dir, "e"), `json:{"file.filename":"` + base + `"}`, FormatRaw, 0, "json: pseudo-filename"},
		{filepath.Join(dir, "f"), "nbd:localhost:10809", FormatRaw, 0, "path refused"},
	} {
		err := CreateOverlay(ctx, nil, tc.path, tc.backing, tc.format, tc.size)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("CreateOverlay(%s, %s, %s) = %v, want %q", tc.path, tc.backing, tc.format, err, tc.want)
		}
	}
	if _, _, err := qcow2Backing(base); err == nil {
		t.Error("qcow2Backing read a raw file")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("left behind: %v", ents)
	}
}

// checkNICs reads the NICs' device types, MAC and backend from QOM.
func checkNICs(t *testing.T, vm *VM) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	get := func(id, prop string) string {
		var v string
		if err := vm.Command(ctx, "qom-get", map[string]string{"path": "/machine/peripheral/" + id, "property": prop}, &v); err != nil {
			t.Fatalf("qom-get %s %s: %v", id, prop, err)
		}
		return v
	}
	if typ, mac, nd := get("nic0", "type"), get("nic0", "mac"), get("nic0", "netdev"); typ != "virtio-net-pci" || mac != "52:54:00:ab:cd:01" || nd != "net0" {
		t.Errorf("nic0: type %s mac %s netdev %s", typ, mac, nd)
	}
	if typ, nd := get("nic1", "type"), get("nic1", "netdev"); typ != "e1000" || nd != "" {
		t.Errorf("nic1: type %s netdev %q", typ, nd)
	}
}
