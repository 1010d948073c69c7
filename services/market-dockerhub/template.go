package marketdockerhub

import (
	"strconv"

	"github.com/slipway/slipway/pkg/onetemplate"
)

// VM template defaults of an imported app: OpenNebula's own defaults for
// a small VM, and Slipway's guest init as PID 1 of a kernel booted from
// the kernel registry's "kernel" file.
const (
	DefaultCPU       = "1"
	DefaultMemoryMiB = "768"
	GuestInit        = "/.slipway/init"
	KernelImage      = "kernel"
)

// VMTemplate is the OpenNebula VM template of an app imported as image
// name. imageID < 0 means the catalog has not allocated the image yet, so
// the disk names it by name and owner (which OpenNebula resolves when the
// VM is instantiated).
func VMTemplate(name, user string, imageID int64, app App) string {
	t := &onetemplate.Template{}
	t.Add("NAME", name)
	if app.Description != "" {
		t.Add("DESCRIPTION", app.Description)
	}
	t.Add("CPU", DefaultCPU)
	t.Add("MEMORY", DefaultMemoryMiB)
	disk := map[string]string{"IMAGE": name, "IMAGE_UNAME": user}
	if imageID >= 0 {
		disk = map[string]string{"IMAGE_ID": strconv.FormatInt(imageID, 10)}
	}
	t.AddVector("DISK", disk)
	t.AddVector("OS", map[string]string{
		"KERNEL_DS":  `$FILE[IMAGE="` + KernelImage + `"]`,
		"ROOT":       "vda",
		"KERNEL_CMD": "console=ttyS0 init=" + GuestInit,
	})
	t.AddVector("GRAPHICS", map[string]string{"LISTEN": "0.0.0.0", "TYPE": "VNC"})
	t.AddVector("CONTEXT", map[string]string{"NETWORK": "YES", "SSH_PUBLIC_KEY": "$USER[SSH_PUBLIC_KEY]"})
	return t.String()
}
