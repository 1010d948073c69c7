package qemu

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/slipway/slipway/services/launcher/internal/hostfile"
)

// Defaults applied to a Config.
const (
	DefaultBinary    = "qemu-system-x86_64"
	DefaultMemoryMiB = 256
	DefaultNICModel  = "virtio-net-pci"
	maxIDEDisks      = 6 // ports of the q35 ICH9 AHCI controller
	maxSocketPath    = 107
	consoleFdset     = "1" // the -add-fd set holding the console log's descriptor
)

var (
	idRe  = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_-]{0,30}$`)
	macRe = regexp.MustCompile(`^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$`)
	cpuRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
)

// paths are the files QEMU uses in RunDir.
type paths struct {
	qmp, pid, console string
}

func (c *Config) paths() paths {
	p := paths{
		qmp:     filepath.Join(c.RunDir, "qmp.sock"),
		pid:     filepath.Join(c.RunDir, "qemu.pid"),
		console: c.ConsoleLog,
	}
	if p.console == "" {
		p.console = filepath.Join(c.RunDir, "console.log")
	}
	return p
}

// normalize fills defaults and checks the configuration, naming what is wrong.
func (c *Config) normalize() error {
	if c.Binary == "" {
		c.Binary = DefaultBinary
	}
	if c.CPUs == 0 {
		c.CPUs = 1
	}
	if c.MemoryMiB == 0 {
		c.MemoryMiB = DefaultMemoryMiB
	}
	if c.CPU == "" && c.Accel == AccelKVM {
		c.CPU = CPUHost
	}
	if err := c.checkMachine(); err != nil {
		return err
	}
	if err := c.checkBoot(); err != nil {
		return err
	}
	if err := c.checkDisks(); err != nil {
		return err
	}
	for i, n := range c.NICs {
		if n.MAC != "" && !macRe.MatchString(n.MAC) {
			return fmt.Errorf("NIC %d: MAC %q must be six hex bytes separated by ':'", i, n.MAC)
		}
		if strings.ContainsAny(n.Model, ",= ") {
			return fmt.Errorf("NIC %d: model %q is not a QEMU device name", i, n.Model)
		}
	}
	return nil
}

func (c *Config) checkMachine() error {
	switch {
	case c.Accel != AccelKVM && c.Accel != AccelTCG:
		return fmt.Errorf("accel %q must be kvm or tcg", c.Accel)
	case c.CPU != "" && !cpuRe.MatchString(c.CPU):
		return fmt.Errorf("CPU model %q is not a QEMU CPU model name", c.CPU)
	case c.CPUs < 1 || c.CPUs > 255:
		return fmt.Errorf("CPUs %d must be 1 to 255", c.CPUs)
	case c.MemoryMiB < 16:
		return fmt.Errorf("memory %d MiB is too small (at least 16)", c.MemoryMiB)
	case c.RunDir == "":
		return fmt.Errorf("RunDir is required")
	}
	if st, err := os.Stat(c.RunDir); err != nil || !st.IsDir() {
		return fmt.Errorf("RunDir %s is not a directory", c.RunDir)
	}
	if p := c.paths().qmp; len(p) > maxSocketPath {
		return fmt.Errorf("RunDir %s is too long for a unix socket path (%d > %d bytes)", c.RunDir, len(p), maxSocketPath)
	}
	return nil
}

func (c *Config) checkBoot() error {
	if c.Kernel == "" && (c.Initrd != "" || c.Append != "") {
		return fmt.Errorf("initrd or kernel command line given without a kernel")
	}
	for what, p := range map[string]string{"kernel": c.Kernel, "initrd": c.Initrd} {
		if p == "" {
			continue
		}
		if st, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		} else if !st.Mode().IsRegular() {
			return fmt.Errorf("%s %s is not a regular file", what, p)
		}
	}
	return nil
}

func (c *Config) checkDisks() error {
	ids := map[string]bool{}
	ide := 0
	for i := range c.Disks {
		d := &c.Disks[i]
		if err := d.normalize(i); err != nil {
			return fmt.Errorf("disk %d (%s): %w", i, d.Path, err)
		}
		if ids[d.ID] {
			return fmt.Errorf("disk %d: ID %s is used twice", i, d.ID)
		}
		ids[d.ID] = true
		if d.Bus == BusIDE {
			if ide++; ide > maxIDEDisks {
				return fmt.Errorf("disk %d: more than %d IDE disks (the q35 AHCI controller has %d ports)", i, maxIDEDisks, maxIDEDisks)
			}
		}
	}
	return nil
}

func (d *Disk) normalize(i int) error {
	if d.ID == "" {
		d.ID = "disk" + strconv.Itoa(i)
	}
	if d.Format == "" {
		d.Format = FormatRaw
	}
	if d.Bus == "" {
		d.Bus = BusVirtio
	}
	if d.Media == "" {
		d.Media = MediaDisk
	}
	if d.Media == MediaCDROM {
		d.ReadOnly = true
	}
	switch {
	case !idRe.MatchString(d.ID):
		return fmt.Errorf("ID %q must be a letter then letters, digits, '-' or '_' (at most 31)", d.ID)
	case d.Format != FormatRaw && d.Format != FormatQcow2 && d.Format != FormatLUKS:
		return fmt.Errorf("format %q must be raw, qcow2 or luks", d.Format)
	case d.Bus != BusVirtio && d.Bus != BusSCSI && d.Bus != BusIDE:
		return fmt.Errorf("bus %q must be virtio, scsi or ide", d.Bus)
	case d.Media != MediaDisk && d.Media != MediaCDROM:
		return fmt.Errorf("media %q must be disk or cdrom", d.Media)
	case d.Format == FormatLUKS && d.SecretFile == "":
		return fmt.Errorf("a luks disk needs SecretFile")
	case d.Format != FormatLUKS && d.SecretFile != "":
		return fmt.Errorf("SecretFile is only for luks disks (format is %s)", d.Format)
	case d.BackingSecretFile != "" && d.Format != FormatQcow2:
		return fmt.Errorf("BackingSecretFile is only for qcow2 overlays (format is %s)", d.Format)
	case strings.ContainsAny(d.Serial, ",=\x00"):
		return fmt.Errorf("serial %q must not contain ',' or '='", d.Serial)
	}
	if err := hostfile.Regular(d.Path); err != nil {
		return err
	}
	for _, s := range []string{d.SecretFile, d.BackingSecretFile} {
		if err := checkSecretFile(s); err != nil {
			return err
		}
	}
	return nil
}

// checkSecretFile refuses a passphrase file others can read.
func checkSecretFile(p string) error {
	if p == "" {
		return nil
	}
	st, err := os.Stat(p)
	if err != nil {
		return fmt.Errorf("secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("secret file %s is not a regular file", p)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("secret file %s has mode %04o: it must be 0600 (readable by its owner only)", p, st.Mode().Perm())
	}
	return nil
}

// args builds QEMU's command line from a normalized Config.
func (c *Config) args() ([]string, error) {
	p := c.paths()
	a := []string{
		"-name", "guest=" + optEsc(c.Name) + ",debug-threads=on",
		"-machine", "q35,accel=" + c.Accel,
		"-m", strconv.FormatInt(c.MemoryMiB, 10),
		"-smp", strconv.Itoa(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-sandbox", SandboxArg,
		"-add-fd", "fd=3,set=" + consoleFdset + ",opaque=console",
		"-chardev", "file,id=console,append=on,path=/dev/fdset/" + consoleFdset,
		"-serial", "chardev:console",
		"-chardev", "socket,id=qmp,server=on,wait=off,path=" + optEsc(p.qmp),
		"-mon", "chardev=qmp,mode=control",
		"-pidfile", p.pid,
	}
	if c.Name == "" {
		a = append(a[:0], a[2:]...)
	}
	if c.CPU != "" {
		a = append(a, "-cpu", c.CPU)
	}
	if c.Kernel != "" {
		a = append(a, "-kernel", c.Kernel)
		if c.Initrd != "" {
			a = append(a, "-initrd", c.Initrd)
		}
		if c.Append != "" {
			a = append(a, "-append", c.Append)
		}
	}
	disks, err := c.diskArgs()
	if err != nil {
		return nil, err
	}
	a = append(a, disks...)
	a = append(a, c.nicArgs()...)
	return append(a, c.ExtraArgs...), nil
}

// optEsc escapes a value for QEMU's key=value option syntax (',' is doubled).
func optEsc(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// jsonArg writes a -object/-blockdev argument in QEMU's JSON form, which needs no escaping
// of paths.
func jsonArg(v map[string]any) string {
	b, _ := json.Marshal(v) // maps of strings and bools always marshal
	return string(b)
}

func (c *Config) diskArgs() ([]string, error) {
	var a []string
	scsi := false
	for _, d := range c.Disks {
		if d.Bus == BusSCSI && !scsi {
			a = append(a, "-device", "virtio-scsi-pci,id=scsi0")
			scsi = true
		}
	}
	ide := 0
	for i, d := range c.Disks {
		nodes, err := d.blockdevs()
		if err != nil {
			return nil, fmt.Errorf("disk %d (%s): %w", i, d.Path, err)
		}
		a = append(a, nodes...)
		a = append(a, "-device", d.device(i, &ide))
	}
	return a, nil
}

// blockdevs returns the -object/-blockdev arguments of a disk: a file node and its format
// node named d.ID; LUKS secrets as secret objects reading the passphrase file.
func (d Disk) blockdevs() ([]string, error) {
	var a []string
	ro := d.ReadOnly
	a = append(a, "-blockdev", jsonArg(map[string]any{
		"driver": "file", "node-name": d.ID + "-file", "filename": d.Path, "read-only": ro}))
	top := map[string]any{"driver": d.Format, "node-name": d.ID, "file": d.ID + "-file", "read-only": ro}
	if d.Format == FormatLUKS {
		a = append(a, secretObject(d.ID+"-secret", d.SecretFile)...)
		top["key-secret"] = d.ID + "-secret"
	}
	if d.BackingSecretFile != "" {
		base, err := d.lukBackingPath()
		if err != nil {
			return nil, err
		}
		a = append(a, secretObject(d.ID+"-bsecret", d.BackingSecretFile)...)
		a = append(a, "-blockdev", jsonArg(map[string]any{
			"driver": "file", "node-name": d.ID + "-bfile", "filename": base, "read-only": true}))
		a = append(a, "-blockdev", jsonArg(map[string]any{
			"driver": "luks", "node-name": d.ID + "-base", "file": d.ID + "-bfile",
			"key-secret": d.ID + "-bsecret", "read-only": true}))
		top["backing"] = d.ID + "-base"
	}
	return append(a, "-blockdev", jsonArg(top)), nil
}

func secretObject(id, file string) []string {
	return []string{"-object", jsonArg(map[string]any{
		"qom-type": "secret", "id": id, "file": file, "format": "raw"})}
}

// lukBackingPath finds the LUKS backing image of a qcow2 overlay.
func (d Disk) lukBackingPath() (string, error) {
	name, format, err := qcow2Backing(d.Path)
	if err != nil {
		return "", err
	}
	if format != "" && format != FormatLUKS {
		return "", fmt.Errorf("its backing file is %s, not luks: BackingSecretFile is only for LUKS backing images", format)
	}
	if d.BackingFile != "" {
		name = d.BackingFile
	}
	if name == "" {
		return "", fmt.Errorf("BackingSecretFile given but the overlay has no backing file")
	}
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(d.Path), name)
	}
	if err := hostfile.Regular(name); err != nil {
		return "", fmt.Errorf("backing file: %w", err)
	}
	return name, nil
}

// device returns the -device argument attaching disk i; ide counts AHCI ports in use.
func (d Disk) device(i int, ide *int) string {
	cd := d.Media == MediaCDROM
	var dev string
	switch d.Bus {
	case BusSCSI:
		dev = "scsi-hd"
		if cd {
			dev = "scsi-cd"
		}
		dev += ",bus=scsi0.0,channel=0,lun=0,scsi-id=" + strconv.Itoa(i)
	case BusIDE:
		dev = "ide-hd"
		if cd {
			dev = "ide-cd"
		}
		dev += ",bus=ide." + strconv.Itoa(*ide)
		*ide++
	default:
		// virtio-blk has no CDROM media: a cdrom on virtio is a read-only virtio disk.
		dev = "virtio-blk-pci"
	}
	dev += ",drive=" + d.ID + ",id=" + d.ID + "-dev"
	if d.Serial != "" {
		dev += ",serial=" + d.Serial
	}
	return dev
}

func (c *Config) nicArgs() []string {
	var a []string
	for i, n := range c.NICs {
		model := n.Model
		if model == "" {
			model = DefaultNICModel
		}
		dev := model + ",id=nic" + strconv.Itoa(i)
		if n.User {
			id := "net" + strconv.Itoa(i)
			a = append(a, "-netdev", "user,id="+id)
			dev += ",netdev=" + id
		}
		if n.MAC != "" {
			dev += ",mac=" + strings.ToLower(n.MAC)
		}
		a = append(a, "-device", dev)
	}
	return a
}

// BusForPrefix maps a target or prefix (vda, sdb, hd) to a bus: vd → virtio, sd → scsi,
// hd → ide.
func BusForPrefix(target string) (string, error) {
	if len(target) >= 2 {
		switch target[:2] {
		case "vd":
			return BusVirtio, nil
		case "sd":
			return BusSCSI, nil
		case "hd":
			return BusIDE, nil
		}
	}
	return "", fmt.Errorf("target %q: prefix must be vd (virtio), sd (scsi) or hd (ide)", target)
}
