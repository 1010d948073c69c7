// Package qemu runs one QEMU virtual machine as a child process and controls it over QMP
// (github.com/digitalocean/go-qemu): start, status, ACPI power-down, pause/resume, quit,
// kill, internal disk snapshots, raw commands. The accelerator is proven, not
// guessed: Probe boots a tiny guest under KVM with -cpu host, KVM with a conservative
// CPU model, then TCG, and the first whose guest prints its line wins (a /dev/kvm that
// opens may still be unable to run guests, as under nested virtualization).
//
// The machine is q35 with -nodefaults, -no-user-config, -display none and -no-reboot (a
// guest reboot or panic=-1 ends QEMU). The serial console (ttyS0) is appended to
// Config.ConsoleLog; QMP listens on RunDir/qmp.sock.
//
// Kernel boot: Config.Kernel is a bzImage (Linux boot protocol) or an uncompressed ELF
// vmlinux carrying the XEN_ELFNOTE_PHYS32_ENTRY note, which QEMU (4.0 and later) enters
// through PVH on its own: PVH boot needs nothing but -kernel <vmlinux>. An ELF without the
// note does not boot.
//
// Disks are -blockdev trees: a file node "<ID>-file" under a format node "<ID>" (raw,
// qcow2 or luks) attached to a device "<ID>-dev". The bus decides the device: virtio →
// virtio-blk-pci (appearing as vda, vdb… in the order given), scsi → scsi-hd/scsi-cd on
// one virtio-scsi-pci controller (scsi-id = the disk's index), ide → ide-hd/ide-cd on the
// q35 AHCI ports (at most 6). A CDROM is always read-only; on virtio it is a read-only
// virtio disk. A LUKS disk's passphrase reaches QEMU only as
// -object secret,id=<ID>-secret,file=<0600 file>,format=raw and key-secret=<ID>-secret,
// never on the command line. A qcow2 overlay over a LUKS image (a non-persistent LUKS
// disk; see CreateOverlay) is opened as file → luks (key-secret from BackingSecretFile)
// → the overlay's explicit backing node, because QEMU cannot open an encrypted backing
// file from the qcow2 header alone.
//
// Confinement: QEMU runs with -sandbox (SandboxArg), an empty environment, its working
// directory in RunDir and, with Config.User, as an unprivileged uid/gid that owns RunDir
// and VMDir. Every file it opens is checked to lie under RunDir, VMDir or ImageDirs
// (symbolic links and qcow2 backing chains followed) before it starts. Template text
// (OpenNebula RAW) reaches the command line only through ParseRaw.
//
// A QEMU process never outlives its VM value: it runs in its own process group, gets
// SIGKILL when this process dies (PDEATHSIG), and is killed when the Start context ends or
// Start fails.
package qemu

// Disk formats.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
	FormatLUKS  = "luks"
)

// Disk buses.
const (
	BusVirtio = "virtio" // virtio-blk-pci
	BusSCSI   = "scsi"   // scsi-hd / scsi-cd on a virtio-scsi-pci controller
	BusIDE    = "ide"    // ide-hd / ide-cd on the q35 AHCI controller
)

// Disk media.
const (
	MediaDisk  = "disk"
	MediaCDROM = "cdrom"
)

// Accelerators.
const (
	AccelKVM = "kvm"
	AccelTCG = "tcg"
)

// Disk is one disk of the VM.
type Disk struct {
	// ID names the disk: it is the QMP node name of its top (format) node, the name
	// SnapshotInternal and QueryBlock use. Default "disk<index>". Letters, digits, '-', '_'.
	ID     string
	Path   string
	Format string // raw (default), qcow2, luks
	Bus    string // virtio (default), scsi, ide
	Media  string // disk (default), cdrom (always read-only)
	// ReadOnly opens the disk read-only (a CDROM always is).
	ReadOnly bool
	// SecretFile is the LUKS passphrase file (mode 0600, the passphrase bytes as is) of a
	// luks disk.
	SecretFile string
	// BackingSecretFile, for a qcow2 overlay whose backing file is a LUKS image: the
	// backing image's passphrase file. The backing chain is then opened explicitly
	// (file → luks → as backing of the qcow2 node).
	BackingSecretFile string
	// BackingFile overrides the backing path recorded in the qcow2 header (only used with
	// BackingSecretFile); "" = the header's, relative to the overlay's directory.
	BackingFile string
	Serial      string // serial number shown to the guest; "" = none
}

// NIC is one network card.
type NIC struct {
	Model string // QEMU device; default virtio-net-pci
	MAC   string // "" = QEMU's default
	User  bool   // user-mode (slirp) networking; otherwise the NIC has no backend link
}

// Config describes one VM.
type Config struct {
	Name      string // guest name (-name); also in error messages
	Binary    string // default qemu-system-x86_64
	Accel     string // kvm or tcg; "" = what ProbeOnce chooses for Binary
	CPU       string // -cpu model; "" = host under kvm, QEMU's default under tcg
	CPUs      int    // default 1
	MemoryMiB int64  // default 256
	Kernel    string // -kernel: a bzImage, or an ELF vmlinux with a PVH note (PVH boot)
	Initrd    string // -initrd
	Append    string // kernel command line
	Disks     []Disk
	NICs      []NIC
	// RunDir holds the QMP socket, the pid file and, by default, the console log. It must
	// exist; keep its path short (unix socket paths are limited to 107 bytes).
	RunDir string
	// ConsoleLog receives the serial console (appended); default RunDir/console.log. This
	// package opens it and QEMU gets the open descriptor (-add-fd), so it may lie anywhere.
	ConsoleLog string
	// VMDir is the VM's own directory (overlays, private copies, LUKS secret files);
	// default RunDir. With User set, it and RunDir are given to User before QEMU starts.
	VMDir string
	// ImageDirs are shared, read-only directories QEMU may read images from (the verified
	// image cache). Every file QEMU opens must lie under RunDir, VMDir or one of these.
	ImageDirs []string
	// User, when set, is the identity QEMU runs as (this process must be root to switch).
	User *User
	// ExtraArgs are appended to QEMU's command line as they are: callers pass only
	// arguments they trust or that ParseRaw accepted.
	ExtraArgs []string
}

// Status is the run state QMP's query-status reports ("running", "paused", "shutdown",
// "prelaunch", "inmigrate", "internal-error", "io-error", "guest-panicked"…).
type Status string

// BlockInfo is one entry of QMP query-block, reduced to what callers check.
type BlockInfo struct {
	Device    string // BlockBackend name ("" for -blockdev disks)
	QdevID    string // the guest device's qdev path/id
	NodeName  string // the top node's name (Disk.ID)
	Driver    string // the top node's format driver (raw, qcow2, luks)
	File      string // the image path
	ReadOnly  bool
	Encrypted bool
	Removable bool
	// BackingDriver/BackingFile describe the backing image, if any.
	BackingDriver string
	BackingFile   string
}
