package cli

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The vm commands follow and control the launcher's VMs like OpenNebula's
// onevm.

func newVMCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vm",
		Short: "List, show and control VMs (like OpenNebula's onevm)",
		RunE:  unknownSubcommand,
	}
	cmd.AddCommand(newVMListCmd(c), newVMShowCmd(c), newVMConsoleCmd(c),
		newVMActionCmd(c, schemas.CommandLauncherTerminate, "End the VM from any state: EPILOG (persistent disks written back, images released) → DONE", schemas.VMStateDone),
		newVMActionCmd(c, schemas.CommandLauncherPoweroff, "Power the VM off (ACPI; --hard stops QEMU at once), keeping its disks", schemas.VMStatePoweroff),
		newVMActionCmd(c, schemas.CommandLauncherResume, "Boot a VM in POWEROFF again", schemas.VMStateRunning),
		newVMSaveAsCmd(c), newVMSnapshotCmd(c))
	cmd.AddCommand(newVMDiskSnapshotCmds(c)...)
	return cmd
}

// findVM resolves a VM ID or name.
func findVM(ctx context.Context, b *bus.Bus, ref string) (schemas.VM, error) {
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		return ask(ctx, b, schemas.QryLauncherVM, schemas.LauncherVMRequest{ID: id}, "VM "+ref)
	}
	var vm schemas.VM
	vms, err := listVMs(ctx, b)
	if err != nil {
		return vm, err
	}
	var found []schemas.VM
	for _, v := range vms {
		if v.Name == ref {
			found = append(found, v)
		}
	}
	switch len(found) {
	case 0:
		return vm, fmt.Errorf("no VM is named %q", ref)
	case 1:
		return found[0], nil
	}
	return vm, fmt.Errorf("%d VMs are named %q: use an ID", len(found), ref)
}

func listVMs(ctx context.Context, b *bus.Bus) ([]schemas.VM, error) {
	return ask(ctx, b, schemas.QryLauncherVMs, schemas.LauncherVMsRequest{}, "list VMs")
}

// vmShortState is onevm list's STAT column.
func vmShortState(st schemas.VMState) string { return render.ShortVMState(string(st)) }

var vmColumns = []render.Column{{Title: "ID", Right: true}, {Title: "USER"}, {Title: "NAME"}, {Title: "STAT"},
	{Title: "CPU", Right: true}, {Title: "MEM", Right: true}, {Title: "TEMPLATE", Right: true}, {Title: "TIME", Right: true}}

func newVMListCmd(c *client) *cobra.Command {
	var all bool
	cmd := newListCmd(c, "list [--all] [--json]", "List VMs (ID USER NAME STAT CPU MEM TEMPLATE TIME); DONE ones with --all",
		func(ctx context.Context, b *bus.Bus) ([]schemas.VM, error) {
			vms, err := listVMs(ctx, b)
			if err != nil || all {
				return vms, err
			}
			return slices.DeleteFunc(vms, func(v schemas.VM) bool { return v.State == schemas.VMStateDone }), nil
		},
		func(w io.Writer, vms []schemas.VM) error { return writeVMs(w, vms, c.user, time.Now()) })
	cmd.Flags().BoolVar(&all, "all", false, "list DONE VMs too")
	return cmd
}

func writeVMs(w io.Writer, vms []schemas.VM, user string, now time.Time) error {
	rows := make([][]string, len(vms))
	for i, v := range vms {
		rows[i] = []string{strconv.FormatInt(v.ID, 10), user, v.Name, vmShortState(v.State),
			strconv.FormatInt(max(v.Vcpu, 1), 10), render.HumanSize(v.MemoryMiB << 20),
			strconv.FormatInt(v.TemplateID, 10), age(v.CreatedAt, now)}
	}
	return render.Table(w, vmColumns, rows)
}

// age is onevm's TIME: how long ago the VM was created, d hh:mm:ss.
func age(created string, now time.Time) string {
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return "-"
	}
	d := max(now.Sub(t), 0).Round(time.Second)
	days := int(d / (24 * time.Hour))
	d -= time.Duration(days) * 24 * time.Hour
	return fmt.Sprintf("%dd %02d:%02d:%02d", days, int(d.Hours()), int(d.Minutes())%60, int(d.Seconds())%60)
}

func newVMShowCmd(c *client) *cobra.Command {
	return newShowCmd(c, "show ID|NAME [--json]", "Show a VM: state, disks, kernel, why it is in its state", findVM,
		func(w io.Writer, vm schemas.VM) error { return showVM(w, vm, c.user) })
}

func showVM(w io.Writer, vm schemas.VM, user string) error {
	lines := [][2]string{{"ID", strconv.FormatInt(vm.ID, 10)}, {"NAME", vm.Name}, {"USER", cmp.Or(vm.User, user)}, {"GROUP", cmp.Or(vm.Group, "-")},
		{"STATE", string(vm.State)}, {"TEMPLATE", strconv.FormatInt(vm.TemplateID, 10)},
		{"VCPU", strconv.FormatInt(vm.Vcpu, 10)}, {"MEMORY", render.HumanSize(vm.MemoryMiB << 20)},
		{"START TIME", regTime(vm.CreatedAt, time.Local)}}
	if vm.Kernel != nil {
		lines = append(lines, [2]string{"KERNEL", fileLine(*vm.Kernel)})
	}
	if vm.Initrd != nil {
		lines = append(lines, [2]string{"INITRD", fileLine(*vm.Initrd)})
	}
	if vm.Cmdline != "" {
		lines = append(lines, [2]string{"CMDLINE", vm.Cmdline})
	}
	if a := vm.Accelerator; a != nil {
		lines = append(lines, [2]string{"ACCELERATOR", fmt.Sprintf("%s (-cpu %s)", a.Accel, a.Cpu)})
		for _, p := range a.PassedOver {
			lines = append(lines, [2]string{"PASSED OVER", fmt.Sprintf("%s (-cpu %s): %s", p.Accel, p.Cpu, p.Reason)})
		}
	}
	if vm.Reason != "" {
		lines = append(lines, [2]string{"REASON", vm.Reason})
	}
	if vm.Error != "" {
		lines = append(lines, [2]string{"ERROR", vm.Error})
	}
	if err := writeInformation(w, "VIRTUAL MACHINE", vm.ID, lines); err != nil {
		return err
	}
	if err := writeSection(w, "PERMISSIONS", render.PermissionLines(vm.Permissions)); err != nil {
		return err
	}
	if len(vm.Disks) == 0 {
		return nil
	}
	if _, err := fmt.Fprintf(w, "\nVM DISKS\n"); err != nil {
		return err
	}
	cols := []render.Column{{Title: "ID", Right: true}, {Title: "TARGET"}, {Title: "IMAGE"}, {Title: "TYPE"},
		{Title: "FORMAT"}, {Title: "SIZE", Right: true}, {Title: "SAVE"}, {Title: "RO"}, {Title: "LUKS"}, {Title: "SNAPSHOTS"}}
	rows := make([][]string, len(vm.Disks))
	for i, d := range vm.Disks {
		rows[i] = []string{strconv.FormatInt(d.DiskID, 10), d.Target, fmt.Sprintf("%s (%d)", d.Image, d.ImageID),
			string(d.Type), string(d.Format), render.HumanSize(d.Size), render.YesNo(d.Persistent),
			render.YesNo(d.Readonly), render.YesNo(d.LUKS), strings.Join(d.Snapshots, ",")}
	}
	return render.Table(w, cols, rows)
}

func fileLine(f schemas.VMFile) string {
	s := fmt.Sprintf("%s (%d)", f.Name, f.ImageID)
	if f.Version != "" {
		s += " " + f.Version
	}
	if f.BootMode != "" {
		s += ", " + string(f.BootMode) + " boot"
	}
	return s
}

func newVMConsoleCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "console ID|NAME",
		Short: "Print what the VM wrote to its serial console so far",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findVM, args[0], func(b *bus.Bus, vm schemas.VM) error {
				return printConsole(cmd.Context(), b, vm.ID, c.io.out)
			})
		},
	}
}

// printConsole writes the whole console log, a query at a time.
func printConsole(ctx context.Context, b *bus.Bus, id int64, w io.Writer) error {
	for off := int64(0); ; {
		c, err := ask(ctx, b, schemas.QryLauncherConsole, schemas.LauncherConsoleRequest{ID: id, Offset: off}, fmt.Sprintf("console of VM %d", id))
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, c.Text); err != nil {
			return err
		}
		if c.Next >= c.Size || c.Next <= off {
			return nil
		}
		off = c.Next
	}
}

// newVMActionCmd makes terminate, poweroff and resume.
func newVMActionCmd(c *client, verb, short string, target schemas.VMState) *cobra.Command {
	var (
		hard    bool
		wait    bool
		timeout time.Duration
	)
	use := verb + " ID|NAME"
	if verb != schemas.CommandLauncherResume {
		use += " [--hard]"
	}
	cmd := &cobra.Command{
		Use:   use + " [--wait]",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return c.withBus(ctx, func(b *bus.Bus) error {
				vm, err := findVM(ctx, b, args[0])
				if err != nil {
					return err
				}
				var req any = schemas.VMAction{ID: vm.ID, Hard: hard}
				if verb == schemas.CommandLauncherResume {
					req = schemas.LauncherResume{ID: vm.ID}
				}
				ev, err := launcherAnswer[schemas.LauncherVMStateChanged](ctx, b, fmt.Sprintf("vm %s %s", verb, args[0]),
					verb, req, schemas.EventLauncherVMStateChanged)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "VM %d: %s\n", vm.ID, ev.To)
				if !wait || ev.To == target {
					return nil
				}
				return c.waitVMState(ctx, b, vm.ID, timeout, target)
			})
		},
	}
	if verb != schemas.CommandLauncherResume {
		cmd.Flags().BoolVar(&hard, "hard", false, "stop QEMU at once instead of asking the guest to power off")
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the VM is "+string(target)+"; exit 1 if it FAILED")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	return cmd
}

// waitVMState polls the VM until it reaches one of want; FAILED (or DONE
// when not wanted) is an error with the VM's reason.
func (c *client) waitVMState(ctx context.Context, b *bus.Bus, id int64, timeout time.Duration, want ...schemas.VMState) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		vm, err := ask(ctx, b, schemas.QryLauncherVM, schemas.LauncherVMRequest{ID: id}, fmt.Sprintf("VM %d", id))
		if err != nil {
			return err
		}
		switch {
		case slices.Contains(want, vm.State):
			_, err := fmt.Fprintf(c.io.out, "VM %d: %s\n", id, vm.State)
			return err
		case vm.State == schemas.VMStateFailed || vm.State == schemas.VMStateDone:
			return &ExitError{Code: 1, Err: fmt.Errorf("VM %d is %s: %s", id, vm.State, vm.Reason)}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("VM %d is still %s after %s", id, vm.State, timeout)
		case <-t.C:
		}
	}
}

// diskIndex reads a DISK argument: the disk's index as `vm show` lists it.
func diskIndex(arg string) (int64, error) {
	disk, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || disk < 0 {
		return 0, fmt.Errorf("DISK %q: want the disk's index (0, 1, …) as `vm show` lists it", arg)
	}
	return disk, nil
}

func newVMSaveAsCmd(c *client) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "disk-save-as ID|NAME DISK --name IMAGE",
		Short: "Copy a VM disk's current content into a new image; prints ID: N (the image's)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			disk, err := diskIndex(args[1])
			if err != nil {
				return err
			}
			return withFound(cmd.Context(), c, findVM, args[0], func(b *bus.Bus, vm schemas.VM) error {
				req := schemas.LauncherDiskSaveAs{ID: vm.ID, DiskID: disk, Name: name}
				ev, err := launcherAnswer[schemas.LauncherDiskSaved](cmd.Context(), b, fmt.Sprintf("vm disk-save-as %s %d", args[0], disk),
					schemas.CommandLauncherDiskSaveAs, req, schemas.EventLauncherDiskSaved)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.io.out, "ID: %d\n", ev.ImageID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the new image")
	_ = cmd.MarkFlagRequired("name")
	return cmd
}

func newVMSnapshotCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "disk-snapshot ID|NAME DISK SNAPSHOT",
		Short: "Take an internal snapshot of a VM's persistent qcow2 disk",
		Args:  cobra.ExactArgs(3),
		RunE: func(cmd *cobra.Command, args []string) error {
			disk, err := diskIndex(args[1])
			if err != nil {
				return err
			}
			return withFound(cmd.Context(), c, findVM, args[0], func(b *bus.Bus, vm schemas.VM) error {
				req := schemas.LauncherDiskSnapshot{ID: vm.ID, DiskID: disk, Name: args[2]}
				if _, err := launcherCall(cmd.Context(), b, fmt.Sprintf("vm disk-snapshot %s %d", args[0], disk),
					schemas.CommandLauncherDiskSnapshot, req, schemas.EventLauncherDiskSnapshotted); err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.io.out, "VM %d DISK %d: snapshot %q taken\n", vm.ID, disk, args[2])
				return err
			})
		},
	}
}
