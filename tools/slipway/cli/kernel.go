package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

// The kernel commands talk to the kernel-registry service.

const kernelService = schemas.ServiceKernelRegistry

// kernelColumns are kernel list's columns.
var kernelColumns = []render.Column{
	{Title: "ID", Right: true}, {Title: "NAME"}, {Title: "FORMAT"}, {Title: "ARCH"}, {Title: "VERSION"},
	{Title: "PVH"}, {Title: "FC"}, {Title: "INITRD", Right: true}, {Title: "MODULES", Right: true},
}

func newKernelCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "kernel",
		Short: "Add, list and show kernels (vmlinux, bzImage, Debian linux-image packages)",
		RunE:  unknownSubcommand,
	}
	cmd.AddCommand(newKernelAddCmd(g), newKernelListCmd(&g.client), newKernelShowCmd(&g.client))
	return cmd
}

func newKernelAddCmd(g *globals) *cobra.Command {
	var name string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "add [--name NAME] FILE",
		Short: "Add a kernel file or a Debian linux-image package; prints ID: N",
		Long: `Add a kernel: an ELF vmlinux, a bzImage, or a Debian linux-image-*.deb,
whose kernel is taken and whose modules become a minimal initrd. The
kernel-registry service examines it and registers a KERNEL image (and a
RAMDISK image for a package) in the files datastore. Prints "ID: N", the
KERNEL image's ID.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return g.withBus(ctx, func(b *bus.Bus) error {
				k, err := g.addKernel(ctx, b, args[0], name)
				if err != nil {
					return err
				}
				fmt.Fprintf(g.io.err, "kernel %d: %s\n", k.ID, kernelSummary(k))
				_, err = fmt.Fprintf(g.io.out, "ID: %d\n", k.ID)
				return err
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", "", "name of the KERNEL image (default: the file name, or vmlinuz-<version> for a package)")
	cmd.Flags().DurationVar(&timeout, "timeout", 15*time.Minute, "how long to wait for kernel-registry")
	return cmd
}

// addKernel uploads the file to the upload bucket and asks kernel-registry
// to add it.
func (g *globals) addKernel(ctx context.Context, b *bus.Bus, path, name string) (schemas.Kernel, error) {
	var k schemas.Kernel
	// Fail before a long upload when nobody would take it.
	if err := b.Query(ctx, kernelService, schemas.QueryKernelRegistryList, struct{}{}, nil); err != nil {
		return k, fmt.Errorf("kernel-registry does not answer (is it running?): %w", err)
	}
	f, err := os.Open(path)
	if err != nil {
		return k, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return k, err
	}
	if !fi.Mode().IsRegular() {
		return k, fmt.Errorf("%s: not a regular file", path)
	}
	store, bucket, err := g.uploadStore(ctx, b)
	if err != nil {
		return k, err
	}
	base := filepath.Base(path)
	key := blob.StagingKey(blob.UserKernelPrefix(b.Sender()), base) // what kernel-registry accepts from this user
	info, err := store.Put(ctx, bucket, key, f, fi.Size())
	if err != nil {
		return k, fmt.Errorf("upload %s to s3://%s/%s: %w", path, bucket, key, err)
	}
	fmt.Fprintf(g.io.err, "uploaded %s (%s); kernel-registry is examining it\n", base, render.HumanSize(info.Size))
	m, err := b.Call(ctx, kernelService, schemas.CommandKernelRegistryAdd, schemas.KernelRegistryAdd{Source: info.URL(), Name: name, Filename: base}, []string{schemas.EventKernelRegistryAdded})
	if err != nil {
		if bus.IsCallError(err) {
			return k, fmt.Errorf("kernel add %s: %w", path, callFailure(err))
		}
		return k, err
	}
	if err := json.Unmarshal(m.Data, &k); err != nil {
		return k, fmt.Errorf("kernel-registry's answer: %w", err)
	}
	return k, nil
}

// kernelSummary is one line about a kernel.
func kernelSummary(k schemas.Kernel) string {
	s := fmt.Sprintf("%s %s %s, PVH %s, Firecracker %s", k.Format, k.Arch, dashIfEmpty(k.Version), render.YesNo(k.Pvh), render.YesNo(k.Firecracker))
	if k.Initrd != nil {
		s += fmt.Sprintf(", initrd %d (%d modules)", *k.Initrd, k.Modules)
	}
	return s
}

func dashIfEmpty(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newKernelListCmd(c *client) *cobra.Command {
	return newListCmd(c, "list", "List kernels (ID NAME FORMAT ARCH VERSION PVH FC INITRD MODULES)", listKernels,
		func(w io.Writer, kernels []kernelRecord) error {
			rows := make([][]string, len(kernels))
			for i, k := range kernels {
				rows[i] = kernelRow(k)
			}
			return render.Table(w, kernelColumns, rows)
		})
}

// listKernels asks kernel-registry for every kernel.
func listKernels(ctx context.Context, b *bus.Bus) ([]kernelRecord, error) {
	var kernels []kernelRecord
	if err := b.Query(ctx, kernelService, schemas.QueryKernelRegistryList, struct{}{}, &kernels); err != nil {
		return nil, fmt.Errorf("list kernels: %w", err)
	}
	return kernels, nil
}

func kernelRow(k kernelRecord) []string {
	initrd, modules := "-", "-"
	if k.Initrd != nil {
		initrd, modules = strconv.FormatInt(*k.Initrd, 10), strconv.FormatInt(k.Modules, 10)
	}
	return []string{strconv.FormatInt(k.ID, 10), k.Name, string(k.Format), k.Arch, dashIfEmpty(k.Version),
		render.YesNo(k.Pvh), render.YesNo(k.Firecracker), initrd, modules}
}

func newKernelShowCmd(c *client) *cobra.Command {
	return newShowCmd(c, "show NAME|ID", "Show what kernel-registry knows of a kernel", showKernel, writeKernel)
}

// showKernel asks for a kernel by ID (a number) or name.
func showKernel(ctx context.Context, b *bus.Bus, ref string) (kernelRecord, error) {
	var k kernelRecord
	var req any = map[string]string{"name": ref}
	if id, err := strconv.ParseInt(ref, 10, 64); err == nil {
		req = map[string]int64{"id": id}
	}
	if err := b.Query(ctx, kernelService, schemas.QueryKernelRegistryShow, req, &k); err != nil {
		if bus.IsNotFound(err) {
			return k, fmt.Errorf("kernel %s: no such kernel (slipway kernel list shows them)", ref)
		}
		return k, fmt.Errorf("show kernel %s: %w", ref, err)
	}
	return k, nil
}

// kernelRecord is kernel-registry's record of a kernel as list and show
// print it.
type kernelRecord schemas.Kernel

// MarshalJSON writes the record with "initrd" always present (null when
// no initrd was built), so scripts can test it.
func (k kernelRecord) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(schemas.Kernel(k))
	if err != nil {
		return nil, err
	}
	out := map[string]any{}
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	if _, ok := out["initrd"]; !ok {
		out["initrd"] = nil
	}
	return json.Marshal(out)
}

func writeKernel(w io.Writer, k kernelRecord) error {
	lines := [][2]string{{"ID", strconv.FormatInt(k.ID, 10)}, {"NAME", k.Name}, {"FORMAT", string(k.Format)},
		{"ARCH", k.Arch}, {"VERSION", dashIfEmpty(k.Version)}, {"SIZE", render.HumanSize(k.Size)}, {"SHA256", dashIfEmpty(k.SHA256)}}
	if k.Compression != "" {
		lines = append(lines, [2]string{"COMPRESSION", string(k.Compression)})
	}
	pvh := render.YesNo(k.Pvh)
	if k.Pvh {
		pvh += fmt.Sprintf(" (entry %#x)", k.PvhEntry)
	}
	fc := render.YesNo(k.Firecracker)
	if k.FirecrackerReason != "" {
		fc += " (" + k.FirecrackerReason + ")"
	}
	lines = append(lines, [2]string{"PVH", pvh}, [2]string{"FIRECRACKER", fc}, [2]string{"CONFIG", render.YesNo(k.Config)})
	initrd := "-"
	if k.Initrd != nil {
		initrd = fmt.Sprintf("%d (%d modules)", *k.Initrd, k.Modules)
	}
	lines = append(lines, [2]string{"INITRD", initrd}, [2]string{"VMLINUX", dashIfEmpty(k.Vmlinux)},
		[2]string{"SOURCE", string(k.Source)}, [2]string{"REGISTERED", dashIfEmpty(k.CreatedAt)})
	return writeInformation(w, "KERNEL", k.ID, lines)
}
