package market

import "github.com/slipway/slipway/pkg/onetemplate"

// VM template defaults of an imported app: OpenNebula's own defaults for
// a small VM, and Slipway's guest init as PID 1 of a kernel booted from
// the kernel registry (Config.Kernel names its KERNEL image).
const (
	DefaultCPU       = "1"
	DefaultMemoryMiB = "768"
	GuestInit        = "/.slipway/init"
)

// VMTemplate is the OpenNebula VM template of an app imported as image
// name, whose kernel is the KERNEL image kernel owned by user. The disk
// names the image by ID, as the launcher and OpenNebula want it; a disk
// without an ID (app-show before any import, ID < 0) names the image an
// import would create by its name and owner, which the launcher resolves
// when the VM is instantiated.
func VMTemplate(name, user, kernel string, disk Disk, app App) string {
	t := &onetemplate.Template{}
	t.Add("NAME", name)
	if app.Description != "" {
		t.Add("DESCRIPTION", app.Description)
	}
	t.Add("CPU", DefaultCPU)
	t.Add("MEMORY", DefaultMemoryMiB)
	t.AddVector("DISK", disk.Vector())
	t.AddVector("OS", map[string]string{
		"KERNEL_DS":  KernelDS(kernel, user),
		"ROOT":       "vda",
		"KERNEL_CMD": "console=ttyS0 init=" + GuestInit,
	})
	t.AddVector("GRAPHICS", map[string]string{"LISTEN": "0.0.0.0", "TYPE": "VNC"})
	t.AddVector("CONTEXT", map[string]string{"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]"})
	return t.String()
}

// KernelDS is the OS/KERNEL_DS of a template: the KERNEL image named
// kernel of user, in OpenNebula's $FILE syntax. Config.Validate keeps
// quotes and brackets out of the name, which this syntax cannot escape.
func KernelDS(kernel, user string) string {
	return `$FILE[IMAGE="` + kernel + `", IMAGE_UNAME="` + user + `"]`
}
