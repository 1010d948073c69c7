package cli

// `slipway image create --name NAME --aki K --ari R --ami A` and
// `--uec TARBALL`: an Amazon-style kernel set (AKI kernel, ARI ramdisk, AMI
// raw disk) or the UEC tarball that holds one becomes three images — a
// KERNEL and a RAMDISK in the files datastore, an OS disk through the
// converter's usual inspection — and a VM template whose OS boots that
// kernel and ramdisk with the disk as root. The CLI composes what exists:
// three image creates and a launcher template-create; if one step fails,
// the images already made are deleted.
//
// A UEC tarball is extracted here, confined by pkg/uec, into a temporary
// directory (--tmp-dir), and its three pieces are uploaded as local files
// are; a hostile tarball is refused before any image exists.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/pkg/onetemplate"
	"github.com/slipway/slipway/pkg/uec"
	"github.com/slipway/slipway/schemas"
)

// kernelSetFlags are the create flags of a kernel set.
type kernelSetFlags struct {
	aki, ari, ami, uec string
	filesDatastore     string
	root, kernelCmd    string
	cpu, memoryMiB     int
	tmpDir             string
}

// given tells whether the create is a kernel set.
func (k kernelSetFlags) given() bool { return k.aki != "" || k.ari != "" || k.ami != "" || k.uec != "" }

// addKernelSetFlags adds the kernel-set flags to image create.
func addKernelSetFlags(cmd *cobra.Command, k *kernelSetFlags) {
	fl := cmd.Flags()
	fl.StringVar(&k.aki, "aki", "", "kernel set: the kernel (AKI) file or URL; with --ari and --ami")
	fl.StringVar(&k.ari, "ari", "", "kernel set: the ramdisk (ARI) file or URL")
	fl.StringVar(&k.ami, "ami", "", "kernel set: the raw OS disk (AMI) file or URL")
	fl.StringVar(&k.uec, "uec", "", "kernel set from a UEC tarball (.tar.gz holding *-vmlinuz*, *-initrd*, *.img): a local file or http(s) URL")
	fl.StringVar(&k.filesDatastore, "files-datastore", "files", "kernel set: the datastore of the KERNEL and RAMDISK images")
	fl.StringVar(&k.root, "root", "vda", "kernel set: the template's OS/ROOT, the root device the kernel mounts")
	fl.StringVar(&k.kernelCmd, "kernel-cmd", "", "kernel set: the template's OS/KERNEL_CMD, appended to the command line")
	fl.IntVar(&k.cpu, "cpu", 1, "kernel set: the template's CPU")
	fl.IntVar(&k.memoryMiB, "memory", 768, "kernel set: the template's MEMORY in MiB")
	fl.StringVar(&k.tmpDir, "tmp-dir", "", "kernel set: directory a UEC tarball is extracted in (default: the system's temporary directory)")
}

// kernelSetRefused are create flags that make no sense for a kernel set:
// the three pieces name their own data and types.
var kernelSetRefused = []string{"path", "size", "type", "rootfs", "source-format", "checksum", "fs", "target"}

// checkKernelSet refuses a kernel-set create that cannot work, before
// anything is uploaded.
func checkKernelSet(f createFlags, k kernelSetFlags, nargs int, changed func(string) bool) error {
	for _, name := range kernelSetRefused {
		if changed(name) {
			return fmt.Errorf("--%s does not apply to a kernel set (--aki/--ari/--ami or --uec): each piece is its own image", name)
		}
	}
	switch {
	case nargs > 0:
		return errors.New("a kernel set takes no image template file: give --name and the pieces")
	case strings.TrimSpace(f.name) == "":
		return errors.New("a kernel set needs --name: it names the OS image and the template (the kernel and ramdisk are NAME-kernel and NAME-ramdisk)")
	case k.uec != "" && (k.aki != "" || k.ari != "" || k.ami != ""):
		return errors.New("give either --uec or --aki, --ari and --ami, not both")
	case k.uec == "" && (k.aki == "" || k.ari == "" || k.ami == ""):
		return errors.New("a kernel set needs all three of --aki (kernel), --ari (ramdisk) and --ami (raw disk), or --uec")
	case k.cpu < 1 || k.memoryMiB < 1:
		return errors.New("--cpu and --memory must be positive")
	case strings.TrimSpace(k.root) == "":
		return errors.New("--root must name a device, e.g. vda")
	}
	for _, p := range []string{k.aki, k.ari, k.ami} {
		if _, err := classifyPath(p); p != "" && err != nil {
			return err
		}
	}
	if k.uec != "" {
		if kind, err := classifyPath(k.uec); err != nil || kind == pathStdin || strings.HasPrefix(strings.ToLower(k.uec), "s3:") || strings.HasPrefix(strings.ToLower(k.uec), "docker:") {
			return fmt.Errorf("--uec %q: give a local .tar.gz file or an http(s):// URL", k.uec)
		}
	}
	return nil
}

// kernelSetPiece is one of the three images to create.
type kernelSetPiece struct {
	label string // "kernel", "ramdisk", "OS disk"
	spec  schemas.ImageCreate
}

// createKernelSet makes the three images and the template, or nothing.
func (g *globals) createKernelSet(ctx context.Context, f createFlags, k kernelSetFlags) error {
	paths := map[uec.Role]string{uec.Kernel: k.aki, uec.Ramdisk: k.ari, uec.Disk: k.ami}
	origins := map[uec.Role]string{}
	if k.uec != "" {
		dir, err := os.MkdirTemp(k.tmpDir, "slipway-uec-")
		if err != nil {
			return fmt.Errorf("temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		set, err := g.extractUEC(ctx, k.uec, dir)
		if err != nil {
			return err
		}
		for role, p := range set {
			paths[role], origins[role] = p.Path, uecOrigin(k.uec, p.Member)
		}
	}
	pieces, err := kernelSetPieces(f, k, paths, origins)
	if err != nil {
		return err
	}
	name := strings.TrimSpace(f.name)
	var ids []int
	undo := func(cause error) error {
		return errors.Join(cause, g.deleteImages(ctx, ids))
	}
	for _, p := range pieces {
		id, err := g.createImage(ctx, p.spec, true, 0, func(id int) {
			ids = append(ids, id)
			fmt.Fprintf(g.io.err, "%s: image %d (%s)\n", p.label, id, p.spec.Name)
		})
		if err != nil || id < 0 {
			return undo(fmt.Errorf("kernel set %s: the %s: %w", name, p.label, pieceError(err)))
		}
	}
	tmpl, err := g.createTemplate(ctx, name, kernelSetTemplate(name, ids[0], ids[1], ids[2], k))
	if err != nil {
		return undo(fmt.Errorf("kernel set %s: the VM template: %w", name, err))
	}
	fmt.Fprintf(g.io.out, "KERNEL ID: %d\nRAMDISK ID: %d\nID: %d\nTEMPLATE ID: %d\n", ids[0], ids[1], ids[2], tmpl.ID)
	return nil
}

// kernelSetPieces are the creates of the kernel, the ramdisk and the OS
// disk, in that order, from the data at paths.
func kernelSetPieces(f createFlags, k kernelSetFlags, paths, origins map[uec.Role]string) ([]kernelSetPiece, error) {
	attrs, err := parseAttrs(f.attrs)
	if err != nil {
		return nil, err
	}
	name := strings.TrimSpace(f.name)
	file := func(role uec.Role, typ schemas.ImageType) schemas.ImageCreate {
		return schemas.ImageCreate{Name: name + "-" + strings.ToLower(string(typ)), Type: typ, Datastore: k.filesDatastore,
			Path: paths[role], Origin: origins[role], Description: f.description}
	}
	disk := schemas.ImageCreate{Name: name, Type: schemas.ImageTypeOS, Datastore: f.datastore, Path: paths[uec.Disk], Origin: origins[uec.Disk],
		Description: f.description, Persistent: f.persistent, DevPrefix: f.devPrefix, Attributes: attrs,
		Format: schemas.DiskFormat(strings.ToLower(f.format)), Compression: schemas.Compression(strings.ToLower(f.compression))}
	return []kernelSetPiece{
		{"kernel", file(uec.Kernel, schemas.ImageTypeKernel)},
		{"ramdisk", file(uec.Ramdisk, schemas.ImageTypeRamdisk)},
		{"OS disk", disk},
	}, nil
}

// createTemplate asks the launcher to create a VM template.
func (c *client) createTemplate(ctx context.Context, name, text string) (tmpl schemas.VMTemplate, err error) {
	err = c.withBus(ctx, func(b *bus.Bus) (err error) {
		tmpl, err = launcherAnswer[schemas.VMTemplate](ctx, b, "template create "+name,
			schemas.CommandLauncherTemplateCreate, schemas.LauncherTemplateCreate{Name: name, Template: text}, schemas.EventLauncherTemplateCreated)
		return err
	})
	return tmpl, err
}

// pieceError is the error of one piece's create, said in words: a
// create that ended in ERROR has printed why and returns a bare exit
// status, which would hide the kernel set's own message.
func pieceError(err error) error {
	if err == nil {
		return errors.New("the catalog registered no image")
	}
	var exit *ExitError
	if errors.As(err, &exit) && exit.Err == nil {
		return errors.New("its import ended in ERROR (see above); the images made for the set are deleted")
	}
	return err
}

// kernelSetTemplate is the VM template booting kernel and ramdisk (by
// image ID) with the OS disk as root. onetemplate quotes every value; the
// IDs are numbers and the other values come from the person running the
// CLI, who could write the template themselves.
func kernelSetTemplate(name string, kernel, ramdisk, disk int, k kernelSetFlags) string {
	t := &onetemplate.Template{}
	t.Add("NAME", name)
	t.Add("CPU", strconv.Itoa(k.cpu))
	t.Add("MEMORY", strconv.Itoa(k.memoryMiB))
	os := map[string]string{
		"KERNEL_DS": fmt.Sprintf("$FILE[IMAGE_ID=%d]", kernel),
		"INITRD_DS": fmt.Sprintf("$FILE[IMAGE_ID=%d]", ramdisk),
		"ROOT":      strings.TrimSpace(k.root),
	}
	if k.kernelCmd != "" {
		os["KERNEL_CMD"] = k.kernelCmd
	}
	t.AddVector("OS", os)
	t.AddVector("DISK", map[string]string{"IMAGE_ID": strconv.Itoa(disk)})
	return t.String()
}

// deleteImages deletes the images of a kernel set that failed half way,
// the last made first.
func (g *globals) deleteImages(ctx context.Context, ids []int) error {
	if len(ids) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	return g.withBus(ctx, func(b *bus.Bus) error {
		var errs []error
		for i := len(ids) - 1; i >= 0; i-- {
			if err := g.actOn(ctx, b, int64(ids[i]), time.Minute, refAction(schemas.CommandCatalogImageDelete)); err != nil {
				errs = append(errs, fmt.Errorf("removing image %d: %w", ids[i], err))
			}
		}
		return errors.Join(errs...)
	})
}

// uecOrigin is what an image made from a UEC member shows as its PATH: the
// tarball and the member, quoted (a member name may hold anything).
func uecOrigin(tarball, member string) string {
	if kind, _ := classifyPath(tarball); kind == pathLocal {
		tarball = localOrigin(tarball)
	}
	o := tarball + "#" + strconv.Quote(member)
	if len(o) > 1024 {
		return ""
	}
	return o
}

// extractUEC reads the tarball at src (a local file or an http(s) URL)
// into dir.
func (g *globals) extractUEC(ctx context.Context, src, dir string) (uec.Set, error) {
	r, err := openUEC(ctx, src)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fmt.Fprintf(g.io.err, "extracting the UEC tarball %s\n", src)
	set, err := uec.Extract(r, dir, uec.Limits{})
	if err != nil {
		return nil, fmt.Errorf("--uec %s: %w", src, err)
	}
	for _, role := range []uec.Role{uec.Kernel, uec.Ramdisk, uec.Disk} {
		fmt.Fprintf(g.io.err, "  %s: %s (%d bytes)\n", role, strconv.Quote(set[role].Member), set[role].Size)
	}
	return set, nil
}

// openUEC opens a local tarball, or GETs a URL: the CLI fetches for the
// person running it, from where they name, as `image export` pushes.
func openUEC(ctx context.Context, src string) (io.ReadCloser, error) {
	if kind, _ := classifyPath(src); kind == pathLocal {
		f, err := os.Open(src)
		if err != nil {
			return nil, fmt.Errorf("--uec: %w", err)
		}
		return f, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, fmt.Errorf("--uec %s: %w", src, err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("--uec %s: %w", src, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("--uec %s: HTTP %s", src, resp.Status)
	}
	return resp.Body, nil
}
