package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/slipway/slipway/pkg/blob"
	"github.com/slipway/slipway/pkg/bus"
	"github.com/slipway/slipway/schemas"
	"github.com/slipway/slipway/tools/slipway/render"
)

func newCreateCmd(g *globals) *cobra.Command {
	var (
		f       createFlags
		ks      kernelSetFlags
		wait    bool
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "create [flags] [TEMPLATE_FILE]",
		Short: "Register an image from a file, a URL or as an empty DATABLOCK",
		Long: `Register an image, like oneimage create. The data comes from --path: a local
file (or - for standard input), which is uploaded to S3 first, an http(s)://
URL or an s3://bucket/key object; or, for an empty DATABLOCK, from --size.

With --rootfs, --path is a root filesystem tarball (tar, or tar compressed
with gzip, xz or zstd: a Linux Containers root.tar.xz, a TurnKey .tar.gz)
that the builder makes a bootable OS disk of, as it does a container image:
the distro's own /sbin/init runs under Slipway's guest init. --size is then
the filesystem's size in MiB (default: the content plus room), --fs its
filesystem (default ext4), --format raw or qcow2 (default qcow2).

With --ova FILE|URL (or a --path ending in .ova), the file is an OVA: the
converter reads its OVF descriptor, verifies its manifest (.mf) and stages
its disks; the image becomes the first disk, each further disk an image
NAME-disk<N> (DATABLOCK), and a VM template NAME is created with those
disks and the descriptor's CPUs, memory and OS. Disks are stored as qcow2
unless --format says otherwise. With --wait it follows every disk's
image, then reports the VM template (its ID, or why the launcher refused
it: the images are kept); it exits non-zero if an image ends in ERROR or
the template was refused.

--checksum may be given once per algorithm (md5:, sha256:, sha512:<hex>):
every one is checked against the bytes as fetched.

An image template in OpenNebula syntax may be given instead of or as well as
flags (NAME, PATH, DESCRIPTION, TYPE, PERSISTENT, DEV_PREFIX, TARGET, SIZE,
FORMAT, FS; any other attribute is kept as an image attribute); flags
override the template.

Prints "ID: N" once the catalog has registered the image. With --wait it then
follows the import and exits non-zero if the image ends in ERROR.

A kernel set (--aki KERNEL --ari RAMDISK --ami DISK, files or URLs, or --uec
TARBALL, a gzipped tar of Ubuntu's UEC naming: *-vmlinuz*, *-initrd*, *.img)
makes NAME-kernel (KERNEL) and NAME-ramdisk (RAMDISK) in --files-datastore,
NAME (OS, the raw disk, inspected and stored as any import, --format and
--compression apply) and a VM template NAME booting them: OS = [ KERNEL_DS,
INITRD_DS, ROOT (--root, default vda), KERNEL_CMD (--kernel-cmd) ] and the
disk. It waits for all three; if one fails, those made are deleted. A UEC
tarball is extracted locally (--tmp-dir), confined: links, ../ or absolute
names, two kernels, a missing piece or more than 64 GiB refuse it before any
image exists. Prints KERNEL ID, RAMDISK ID, ID (the disk) and TEMPLATE ID.`,
		Example: `  slipway image create --name alpine --path ./alpine.qcow2 --wait
  slipway image create --name ubuntu --path https://host/noble.img --format qcow2 --compression zstd
  slipway image create --name scratch --type DATABLOCK --size 1024 --fs ext4
  slipway image create --name debian --rootfs --path https://host/debian/rootfs.tar.xz --size 2048 --checksum sha256:<hex> --wait
  slipway image create image.tmpl --persistent
  slipway image create --name web --ova ./web.ova --wait
  slipway image create --name focal --aki vmlinuz --ari initrd.img --ami root.img
  slipway image create --name precise --uec precise-server-cloudimg-amd64.tar.gz --kernel-cmd "console=ttyS0"`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ks.given() {
				if err := checkKernelSet(f, ks, len(args), cmd.Flags().Changed); err != nil {
					return &ExitError{Code: 2, Err: fmt.Errorf("image create: %w", err)}
				}
				return g.createKernelSet(cmd.Context(), f, ks)
			}
			var tmpl map[string]string
			if len(args) == 1 {
				t, err := readTemplateFile("image template", args[0], g.io.in)
				if err != nil {
					return err
				}
				tmpl = t
			}
			spec, err := buildCreate(tmpl, f, cmd.Flags().Changed)
			if err != nil {
				return &ExitError{Code: 2, Err: fmt.Errorf("image create: %w", err)}
			}
			return g.create(cmd.Context(), spec, wait, timeout)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "image name")
	fl.StringVarP(&f.datastore, "datastore", "d", "default", "datastore (default; files for KERNEL, RAMDISK, CONTEXT)")
	fl.StringVar(&f.description, "description", "", "free text")
	fl.StringVar(&f.typ, "type", "", "OS|CDROM|DATABLOCK|KERNEL|RAMDISK|CONTEXT (default OS)")
	fl.BoolVar(&f.persistent, "persistent", false, "make the image persistent")
	fl.StringVar(&f.devPrefix, "prefix", "", "device prefix (hd, sd, vd, xvd), as oneimage names it; the subject prefix comes from $SLIPWAY_PREFIX here")
	fl.StringVar(&f.devPrefix, "dev-prefix", "", "same as --prefix")
	fl.StringVar(&f.target, "target", "", "device target, e.g. vda")
	fl.StringVar(&f.path, "path", "", "local file, - (stdin), http(s):// URL or s3://bucket/key")
	fl.Int64Var(&f.sizeMiB, "size", 0, "size in MiB of an empty DATABLOCK, or of the filesystem built from a --rootfs")
	fl.StringVar(&f.format, "format", "", "stored format: raw|qcow2|vmdk|vdi|vpc|vhdx (default: keep the detected one)")
	fl.StringVar(&f.sourceFormat, "source-format", "", "declared format of the input; must match what inspection finds")
	fl.StringVar(&f.fs, "fs", "", "filesystem of an empty DATABLOCK or of a --rootfs: ext2|ext3|ext4|xfs")
	fl.BoolVar(&f.rootfs, "rootfs", false, "--path is a root filesystem tarball (tar, .gz, .xz, .zst) to build a bootable OS disk from")
	fl.StringVar(&f.ova, "ova", "", "an OVA (local file, http(s):// or s3:// URL) to import: its disks as images, its system as a VM template")
	fl.StringVar(&f.compression, "compression", "", "qcow2 compression: zstd|zlib")
	fl.StringArrayVar(&f.checksums, "checksum", nil, "expected md5:|sha256:|sha512:<hex> of the input as fetched (repeatable, one per algorithm)")
	fl.StringArrayVar(&f.attrs, "attr", nil, "attribute KEY=VALUE (repeatable)")
	fl.BoolVar(&wait, "wait", false, "follow the import until READY or ERROR")
	fl.DurationVar(&timeout, "timeout", 0, "give up after this long (0: 1m for the registration; no limit with --wait)")
	addKernelSetFlags(cmd, &ks)
	return cmd
}

// readTemplateFile reads the OpenNebula template (what: "image template",
// "market template") in file name, or stdin for "-".
func readTemplateFile(what, name string, stdin io.Reader) (map[string]string, error) {
	var r io.Reader = stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		defer f.Close()
		r = f
	}
	t, err := parseTemplate(r)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", what, name, err)
	}
	return t, nil
}

// create uploads a local path if there is one, publishes the create
// command and waits for the catalog's answer (and with wait, the end of
// the import).
func (g *globals) create(ctx context.Context, spec schemas.ImageCreate, wait bool, timeout time.Duration) error {
	_, err := g.createImage(ctx, spec, wait, timeout, func(id int) { fmt.Fprintf(g.io.out, "ID: %d\n", id) })
	return err
}

// createImage is create returning the new image's ID (-1 when none was
// registered); registered is called with it as soon as the catalog has it.
func (g *globals) createImage(ctx context.Context, spec schemas.ImageCreate, wait bool, timeout time.Duration, registered func(id int)) (int, error) {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	b, err := g.connect(ctx)
	if err != nil {
		return -1, err
	}
	defer b.CloseNow()

	var staged *blob.Info
	var store *blob.Store
	if kind, _ := classifyPath(spec.Path); spec.Path != "" && kind != pathURL {
		var bucket string
		if store, bucket, err = g.uploadStore(ctx, b); err != nil {
			return -1, err
		}
		info, err := g.upload(ctx, store, bucket, blob.UserStagingPrefix(b.Sender()), spec.Path, checksumSHA256(spec))
		if err != nil {
			return -1, err
		}
		staged = &info
		if spec.Origin == "" {
			spec.Origin = localOrigin(spec.Path)
		}
		spec.Path, spec.Staged = info.URL(), true
	}
	unstage := func() {
		if staged != nil {
			_ = store.Delete(context.WithoutCancel(ctx), staged.Bucket, staged.Key)
		}
	}

	// The catalog republishes the workers' progress.
	w, env, err := sendWatched(ctx, b, "catalog.>", schemas.ServiceCatalog, schemas.CommandCatalogImageCreate, spec)
	if err != nil {
		unstage()
		return -1, err
	}
	defer w.close()
	acceptCtx := ctx
	if timeout == 0 {
		var cancel context.CancelFunc
		acceptCtx, cancel = context.WithTimeout(ctx, defaultActionTimeout)
		defer cancel()
	}
	ev, err := awaitOutcome(acceptCtx, w, env.CorrelationID, func(ev event) bool { return ev.Name == schemas.EventCatalogImageCreated }, nil, 0)
	if err != nil {
		var f *failedError
		if errors.As(err, &f) && ev.ID != "" && !isImageID(ev.ID) {
			unstage() // rejected before any image owned the upload
		}
		return -1, fmt.Errorf("image create: %w", err)
	}
	var img render.Image
	if err := ev.decode(&img); err != nil {
		return -1, err
	}
	registered(img.ID)
	switch {
	case !wait:
		return img.ID, nil
	case spec.Ova:
		return img.ID, g.followOVA(ctx, b, w, img)
	}
	return img.ID, g.follow(ctx, b, w, img)
}

func isImageID(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// upload streams a local file (or stdin for "-") to bucket under prefix
// (the user's own staging prefix, all the upload keys write to).
func (g *globals) upload(ctx context.Context, store *blob.Store, bucket, prefix, path, checksum string) (blob.Info, error) {
	var (
		r    io.Reader
		size int64 = -1
		base       = "stdin"
	)
	if path == "-" {
		r = g.io.in
	} else {
		f, err := os.Open(path)
		if err != nil {
			return blob.Info{}, fmt.Errorf("--path: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return blob.Info{}, fmt.Errorf("--path: %w", err)
		}
		if !fi.Mode().IsRegular() {
			return blob.Info{}, fmt.Errorf("--path %q: not a regular file (use - to read standard input)", path)
		}
		r, size, base = f, fi.Size(), filepath.Base(path)
	}
	key := blob.StagingKey(prefix, base) // what the catalog accepts as staged
	bar := newProgressView(g.io.err, "")
	opts := []blob.PutOption{blob.Progress(func(done int64) { bar.update("upload", done, max(size, 0), time.Now()) })}
	if hex, ok := stripSHA256(checksum); ok {
		opts = append(opts, blob.ExpectSHA256(hex))
	}
	info, err := store.Put(ctx, bucket, key, r, size, opts...)
	bar.done()
	if err != nil {
		return blob.Info{}, fmt.Errorf("upload %s to s3://%s/%s: %w", path, bucket, key, err)
	}
	fmt.Fprintf(g.io.err, "uploaded %s (%s) to %s\n", base, render.HumanSize(info.Size), info.URL())
	return info, nil
}

// checksumSHA256 is the sha256 checksum a create names, "" when none
// (buildCreate puts every --checksum in checksums).
func checksumSHA256(spec schemas.ImageCreate) string {
	for _, c := range spec.Checksums {
		if strings.HasPrefix(c, "sha256:") {
			return c
		}
	}
	return ""
}

func stripSHA256(checksum string) (string, bool) {
	if len(checksum) == len("sha256:")+64 && checksum[:7] == "sha256:" {
		return checksum[7:], true
	}
	return "", false
}

// follow watches image img until it is READY or ERROR, drawing the
// progress the catalog republishes under the image, whatever saga step
// and worker make it. Events drive it; a periodic show covers events a slow
// terminal made the subscription drop.
func (c *client) follow(ctx context.Context, b *bus.Bus, w *watcher, img render.Image) error {
	id := strconv.Itoa(img.ID)
	bar := newProgressView(c.io.err, "image "+id)
	defer bar.done()
	poll := time.NewTicker(5 * time.Second)
	defer poll.Stop()
	state := img.State
	for {
		switch state {
		case string(schemas.ImageStateReady):
			bar.done()
			return c.finishReady(ctx, b, int64(img.ID))
		case string(schemas.ImageStateError):
			bar.done()
			return c.finishError(ctx, b, int64(img.ID), "", "")
		}
		select {
		case <-ctx.Done():
			bar.done()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("image %d: still %s when the timeout passed; it goes on (slipway image show %d)", img.ID, state, img.ID)
			}
			return fmt.Errorf("image %d: stopped watching; the import goes on (slipway image show %d)", img.ID, img.ID)
		case m := <-w.events():
			ev, ok := w.parse(m)
			if !ok || ev.ID != id {
				continue
			}
			switch {
			case ev.Service == schemas.ServiceCatalog && ev.Name == schemas.EventCatalogImageProgress:
				if p, ok := imageProgress(ev); ok {
					bar.show(p, time.Now())
				}
			case ev.Service == schemas.ServiceCatalog && ev.Name == schemas.EventCatalogStateChanged:
				var sc schemas.StateChanged
				if ev.decode(&sc) == nil {
					if sc.To == schemas.ImageStateError {
						bar.done()
						return c.finishError(ctx, b, int64(img.ID), sc.Error, finalCode(ctx, w, id))
					}
					state = string(sc.To)
				}
			case ev.Service == schemas.ServiceCatalog && ev.Name == schemas.EventCatalogFailed:
				// A worker's attempt failed and will be retried: say so, and when.
				if f, final, err := failureOf(ev); err == nil && !final {
					bar.done()
					fmt.Fprintf(c.io.err, "image %s: %s\n", id, attemptLine(f))
				}
			case ev.Service == schemas.ServiceCatalog && ev.Name == schemas.EventCatalogImageDeleted:
				return &ExitError{Code: 1, Err: fmt.Errorf("image %d was deleted while it was imported", img.ID)}
			}
		case <-poll.C:
			if cur, err := showImage(ctx, b, int64(img.ID)); err == nil {
				state = cur.State
			}
		}
	}
}

// followImages follows images ids one after the other until each is
// READY or ERROR: the events of the others wait in the watcher, and each
// starts from the image's state when its turn comes. It fails if any
// ends in ERROR (each says so as it ends).
func (c *client) followImages(ctx context.Context, b *bus.Bus, w *watcher, ids []int64) error {
	var failed error
	for _, id := range ids {
		img, err := showImage(ctx, b, id)
		if err != nil {
			return errors.Join(failed, err)
		}
		failed = errors.Join(failed, c.follow(ctx, b, w, img))
	}
	return failed
}

func (c *client) finishReady(ctx context.Context, b *bus.Bus, id int64) error {
	img, err := showImage(ctx, b, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(c.io.out, "image %d: READY format %s size %s (%d bytes) sha256 %s\n",
		id, img.Format, render.HumanSize(img.Size), img.Size, img.SHA256)
	return nil
}

// finishError reports image id in ERROR with msg (else the record's) and
// the failure's code when known.
func (c *client) finishError(ctx context.Context, b *bus.Bus, id int64, msg, code string) error {
	if msg == "" {
		if img, err := showImage(ctx, b, id); err == nil {
			msg = img.Error
		}
	}
	if msg == "" {
		msg = "no reason recorded"
	}
	if code != "" {
		msg += " (" + code + ")"
	}
	fmt.Fprintf(c.io.err, "image %d: ERROR: %s\n", id, msg)
	return &ExitError{Code: 1}
}

// localOrigin is what the image's PATH shows for an uploaded file: the file
// the user named, not the staging object that is deleted after the import.
func localOrigin(path string) string {
	if path == "-" {
		return "stdin"
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
