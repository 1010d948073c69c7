package cli

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The template commands manage the launcher's VM templates like
// OpenNebula's onetemplate; `template instantiate` makes a VM of one.

// launcherCallTimeout bounds the wait for the launcher's answer to a
// command (a gentle poweroff waits for the guest, up to a minute).
const launcherCallTimeout = 3 * time.Minute

func newVMTemplateCmd(c *client) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "template",
		Short: "Manage VM templates (like OpenNebula's onetemplate)",
		RunE:  unknownSubcommand,
	}
	cmd.AddCommand(newTemplateCreateCmd(c), newTemplateListCmd(c), newTemplateShowCmd(c),
		newTemplateUpdateCmd(c), newTemplateDeleteCmd(c), newTemplateInstantiateCmd(c), newTemplateFirecrackerCmd(c))
	cmd.AddCommand(permissionCmds[schemas.LauncherTemplateChmod, schemas.LauncherTemplateChown, schemas.LauncherTemplateChgrp, schemas.VMTemplate](
		c, "a VM template's",
		func(ctx context.Context, b *bus.Bus, ref string) (int64, error) {
			t, err := findTemplate(ctx, b, ref)
			return t.ID, err
		},
		schemas.CmdLauncherTemplateChmod, func(id int64, p string) schemas.LauncherTemplateChmod {
			return schemas.LauncherTemplateChmod{ID: id, Permissions: p}
		},
		schemas.CmdLauncherTemplateChown, func(id int64, u, g string) schemas.LauncherTemplateChown {
			return schemas.LauncherTemplateChown{ID: id, User: u, Group: g}
		},
		schemas.CmdLauncherTemplateChgrp, func(id int64, g string) schemas.LauncherTemplateChgrp {
			return schemas.LauncherTemplateChgrp{ID: id, Group: g}
		})...)
	return cmd
}

// launcherCall sends a launcher command and waits for the first of its
// events named in accept; what names the command in its error, a refusal
// being the launcher's own message.
func launcherCall(ctx context.Context, b *bus.Bus, what, verb string, data any, accept ...string) (*bus.Msg, error) {
	m, err := call(ctx, b, schemas.ServiceLauncher, verb, data, accept, launcherCallTimeout)
	if err != nil {
		return m, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// launcherAnswer is launcherCall decoding the answering event into a T.
func launcherAnswer[T any](ctx context.Context, b *bus.Bus, what, verb string, data any, accept ...string) (T, error) {
	return decoded[T](launcherCall(ctx, b, what, verb, data, accept...))
}

// readTemplateText reads a VM template file ("-" for stdin).
func readTemplateText(name string, stdin io.Reader) (string, error) {
	r := stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return "", fmt.Errorf("VM template: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, onetemplate.MaxSize+1))
	if err != nil {
		return "", fmt.Errorf("VM template %s: %w", name, err)
	}
	if len(b) > onetemplate.MaxSize {
		return "", fmt.Errorf("VM template %s is larger than %d bytes", name, onetemplate.MaxSize)
	}
	return string(b), nil
}

// templateName is the name a new template gets: --name, else its NAME,
// else the file's base name.
func templateName(flag, text, file string) string {
	if flag != "" {
		return flag
	}
	if t, err := onetemplate.ParseString(text); err == nil {
		if n, ok := t.Get("NAME"); ok && strings.TrimSpace(n) != "" {
			return strings.TrimSpace(n)
		}
	}
	if file == "-" {
		return "template"
	}
	return strings.TrimSuffix(filepath.Base(file), filepath.Ext(file))
}

// findTemplate resolves a template ID or name.
func findTemplate(ctx context.Context, b *bus.Bus, ref string) (schemas.VMTemplate, error) {
	id, name := idOrName(ref)
	return ask(ctx, b, schemas.QryLauncherTemplate, schemas.LauncherTemplateRequest{ID: id, Name: name}, "template "+ref)
}

func newTemplateCreateCmd(c *client) *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "create FILE [--name NAME]",
		Short: "Create a VM template from a file in OpenNebula's syntax (- reads stdin); prints ID: N",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readTemplateText(args[0], c.io.in)
			if err != nil {
				return err
			}
			req := schemas.LauncherTemplateCreate{Name: templateName(name, text, args[0]), Template: text}
			return c.withBus(cmd.Context(), func(b *bus.Bus) error {
				t, err := launcherAnswer[schemas.VMTemplate](cmd.Context(), b, "template create "+args[0],
					schemas.CommandLauncherTemplateCreate, req, schemas.EventLauncherTemplateCreated)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.io.out, "ID: %d\n", t.ID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "template name (default: its NAME, else the file name)")
	return cmd
}

var templateColumns = []render.Column{{Title: "ID", Right: true}, {Title: "USER"}, {Title: "GROUP"}, {Title: "NAME"}, {Title: "REGTIME"}}

func newTemplateListCmd(c *client) *cobra.Command {
	return newListCmd(c, "list", "List VM templates (ID USER GROUP NAME REGTIME)",
		func(ctx context.Context, b *bus.Bus) ([]schemas.VMTemplate, error) {
			return ask(ctx, b, schemas.QryLauncherTemplates, schemas.LauncherTemplatesRequest{}, "list templates")
		},
		func(w io.Writer, list []schemas.VMTemplate) error {
			rows := make([][]string, len(list))
			for i, t := range list {
				rows[i] = []string{strconv.FormatInt(t.ID, 10), c.user, c.user, t.Name, regTime(t.CreatedAt, time.Local)}
			}
			return render.Table(w, templateColumns, rows)
		})
}

// regTime shows an RFC 3339 time as onetemplate list does.
func regTime(s string, loc *time.Location) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return t.In(loc).Format("01/02 15:04:05")
}

func newTemplateShowCmd(c *client) *cobra.Command {
	return newShowCmd(c, "show ID|NAME [--json]", "Show a VM template and its text", findTemplate,
		func(w io.Writer, t schemas.VMTemplate) error { return showTemplate(w, t, c.user) })
}

// showTemplate prints t as onetemplate show does; user is the owner shown
// for a template recorded before templates had one.
func showTemplate(w io.Writer, t schemas.VMTemplate, user string) error {
	if err := writeInformation(w, "TEMPLATE", t.ID, [][2]string{{"ID", strconv.FormatInt(t.ID, 10)}, {"NAME", t.Name},
		{"USER", cmp.Or(t.User, user)}, {"GROUP", cmp.Or(t.Group, "-")}, {"REGISTER TIME", regTime(t.CreatedAt, time.Local)}}); err != nil {
		return err
	}
	if err := writeSection(w, "PERMISSIONS", render.PermissionLines(t.Permissions)); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nTEMPLATE CONTENTS\n%s", withNewline(t.Template))
	return err
}

func withNewline(s string) string {
	if strings.HasSuffix(s, "\n") {
		return s
	}
	return s + "\n"
}

func newTemplateUpdateCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "update ID|NAME FILE",
		Short: "Replace a VM template's text (- reads stdin)",
		Args:  cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			text, err := readTemplateText(args[1], c.io.in)
			if err != nil {
				return err
			}
			return withFound(cmd.Context(), c, findTemplate, args[0], func(b *bus.Bus, t schemas.VMTemplate) error {
				req := schemas.LauncherTemplateUpdate{ID: t.ID, Template: text}
				if _, err := launcherCall(cmd.Context(), b, "template update "+args[0], schemas.CommandLauncherTemplateUpdate,
					req, schemas.EventLauncherTemplateUpdated); err != nil {
					return err
				}
				_, err = fmt.Fprintf(c.io.out, "template %d %q updated\n", t.ID, t.Name)
				return err
			})
		},
	}
}

func newTemplateDeleteCmd(c *client) *cobra.Command {
	return &cobra.Command{
		Use:   "delete ID|NAME",
		Short: "Delete a VM template (its VMs keep running)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withFound(cmd.Context(), c, findTemplate, args[0], func(b *bus.Bus, t schemas.VMTemplate) error {
				if _, err := launcherCall(cmd.Context(), b, "template delete "+args[0], schemas.CommandLauncherTemplateDelete,
					schemas.LauncherTemplateDelete{ID: t.ID}, schemas.EventLauncherTemplateDeleted); err != nil {
					return err
				}
				_, err := fmt.Fprintf(c.io.out, "template %d %q deleted\n", t.ID, t.Name)
				return err
			})
		},
	}
}

func newTemplateInstantiateCmd(c *client) *cobra.Command {
	var (
		name    string
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "instantiate ID|NAME [--name NAME] [--wait]",
		Short: "Create a VM from a template and boot it; prints ID: N (the VM's)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			return withFound(ctx, c, findTemplate, args[0], func(b *bus.Bus, t schemas.VMTemplate) error {
				created, err := launcherAnswer[schemas.LauncherVMCreated](ctx, b, "template instantiate "+args[0],
					schemas.CommandLauncherInstantiate, schemas.LauncherInstantiate{TemplateID: t.ID, Name: name}, schemas.EventLauncherVMCreated)
				if err != nil {
					return err
				}
				fmt.Fprintf(c.io.out, "ID: %d\n", created.ID)
				if !wait {
					return nil
				}
				return c.waitVMState(ctx, b, created.ID, timeout, schemas.VMStateRunning, schemas.VMStatePoweroff)
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "VM name (default: the template's name and the VM ID)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until the VM is RUNNING (or has powered off); exit 1 if it FAILED")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Minute, "how long --wait waits")
	return cmd
}

func newTemplateFirecrackerCmd(c *client) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "firecracker ID|NAME [--output FILE]",
		Short: "Print the Firecracker VM configuration (--config-file JSON) of a template; exit 1 when it is not valid",
		Long: `Print the Firecracker VM configuration of a template: the JSON firecracker --config-file
reads, with the kernel (an uncompressed x86_64 ELF: the image itself, or the vmlinux
kernel-registry kept of a bzImage), the initrd and the raw disks fetched to the launcher's
cache (drives read-only: the cache is shared). No VM is made and no image is locked.
Problems (a qcow2 or LUKS disk, a kernel Firecracker cannot boot…), notes and whether this
host can boot it (a firecracker binary and /dev/kvm) go to stderr; an invalid configuration
exits 1 and --output is then not written.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, name := idOrName(args[0])
			req := schemas.LauncherFirecrackerRequest{TemplateID: id, Name: name}
			ctx, cancel := context.WithTimeout(cmd.Context(), launcherCallTimeout)
			defer cancel()
			return c.withBus(ctx, func(b *bus.Bus) error {
				a, err := ask(ctx, b, schemas.QryLauncherFirecracker, req, "template firecracker "+args[0])
				if err != nil {
					return err
				}
				return writeFirecracker(c, a, output, args[0])
			})
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the configuration to FILE (mode 0600) instead of stdout")
	return cmd
}

// writeFirecracker prints (or writes) the configuration and reports its
// problems, notes and bootability on stderr.
func writeFirecracker(c *client, a schemas.LauncherFirecrackerReply, output, ref string) error {
	for _, n := range a.Notes {
		fmt.Fprintf(c.io.err, "note: %s\n", n)
	}
	for _, p := range a.Problems {
		fmt.Fprintf(c.io.err, "problem: %s\n", p)
	}
	if !a.Bootable && a.WhyNot != "" {
		fmt.Fprintf(c.io.err, "not bootable here: %s\n", a.WhyNot)
	}
	// The reply always has a configuration: bus.Query checked it against
	// the reply schema, which requires one.
	js, err := json.MarshalIndent(a.Config, "", "  ")
	if err != nil {
		return err
	}
	switch {
	case output != "" && a.Valid:
		if err := os.WriteFile(output, append(js, '\n'), 0o600); err != nil {
			return err
		}
	case output == "":
		if _, err := fmt.Fprintf(c.io.out, "%s\n", js); err != nil {
			return err
		}
	}
	if !a.Valid {
		return fmt.Errorf("template %s: the Firecracker configuration is not valid: %d problem(s)", ref, len(a.Problems))
	}
	return nil
}
