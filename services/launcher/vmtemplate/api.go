// Package vmtemplate reads OpenNebula VM templates (NAME, CPU, VCPU, MEMORY, DISK, OS,
// CONTEXT, NIC, RAW) into a Spec the launcher acts on. The syntax itself is parsed by
// pkg/onetemplate; this package gives the attributes their meaning and checks them, with
// errors that name the attribute at fault. Restricted lists the attributes a template
// uses that the operator restricts (RAW and the ones naming host paths by default).
package vmtemplate

// BootMode says how the kernel is entered.
type BootMode string

// Boot modes (OS/BOOT_MODE).
const (
	BootAuto  BootMode = "auto"  // PVH when the kernel has the PVH note, else the Linux boot protocol
	BootPVH   BootMode = "pvh"   // the kernel's PVH entry (an uncompressed ELF vmlinux)
	BootLinux BootMode = "linux" // the Linux/x86 boot protocol (bzImage)
)

// Defaults applied by Parse.
const (
	DefaultVCPU      = 1
	DefaultMemoryMiB = 256
	DefaultRoot      = "vda"
	DefaultDevPrefix = "vd"
)

// FileRef names a file image as OpenNebula's $FILE[IMAGE_ID=n] or
// $FILE[IMAGE="name", IMAGE_UNAME="user"]. Exactly one of ImageID and Image is set in a
// non-zero FileRef.
type FileRef struct {
	ImageID    *int64
	Image      string
	ImageUname string
}

// Disk is one DISK vector.
type Disk struct {
	ImageID    *int64 // IMAGE_ID; nil when the disk is named by IMAGE
	Image      string // IMAGE (name)
	ImageUname string // IMAGE_UNAME (owner of the named image)
	Target     string // TARGET (vda, sdb, hdc…); "" = assigned by Spec.Targets
	DevPrefix  string // DEV_PREFIX (vd, sd, hd); "" = the image's own or DefaultDevPrefix
	ReadOnly   bool   // READONLY = yes
	// Attrs holds every attribute of the vector as written (keys upper-case), for the
	// ones this package does not interpret.
	Attrs map[string]string
}

// OS is the OS vector.
type OS struct {
	KernelDS  FileRef  // KERNEL_DS; zero when absent
	InitrdDS  FileRef  // INITRD_DS; zero when absent
	Root      string   // ROOT, without /dev/ (default "vda")
	KernelCmd string   // KERNEL_CMD, appended to the launcher's command line
	BootMode  BootMode // BOOT_MODE (default auto)
}

// Var is one context variable.
type Var struct {
	Name  string
	Value string
}

// Context is the CONTEXT vector.
type Context struct {
	// Vars are the free variables (everything but FILES_DS), sorted by name so the
	// context disk is reproducible (the template syntax keeps no order inside a vector).
	Vars    []Var
	FilesDS []FileRef // FILES_DS: file images copied to the context disk
}

// NIC is one NIC vector.
type NIC struct {
	Model   string // MODEL (virtio, e1000…); "" = the launcher's default
	MAC     string // MAC, normalised to lower case aa:bb:cc:dd:ee:ff
	Network string // NETWORK (name), kept for the record
	Attrs   map[string]string
}

// Spec is a parsed, checked VM template.
type Spec struct {
	Name      string
	CPU       float64 // CPU (share of a physical CPU); 0 when absent
	VCPU      int     // VCPU (default 1)
	MemoryMiB int64   // MEMORY in MiB (default 256)
	Disks     []Disk
	OS        OS
	Context   Context
	NICs      []NIC
	Raw       string // RAW: DATA of a RAW vector, or a single RAW value
	Text      string // the template text as given
}
